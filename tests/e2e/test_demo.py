"""`gateway demo`, the README's first command, tells the story it promises."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.store import open_store


def test_demo_registers_fills_the_house_and_moves_the_waiting_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "demo.sqlite3"
    assert (
        main(["demo", "--participants", "14", "--capacity", "10", "--database", str(database)]) == 0
    )
    out = capsys.readouterr().out
    assert out.count(" registered") >= 10
    assert "waiting, place 4 on the waiting list" in out
    assert "Lena     email  cancelled (offer expired)" in out
    assert "Mateo    matrix offered" in out
    assert "METHOD:REQUEST" in out and "DTSTART;VALUE=DATE:20270712" in out
    assert "crews approved and announced (2 crews)" in out
    assert "introduction to" in out and "crew-call invite FREQ=WEEKLY;COUNT=4" in out


def test_demo_database_holds_what_it_printed(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    assert main(["demo", "--database", str(database)]) == 0

    async def read() -> tuple[list[Any], list[Any]]:
        store = await open_store(database)
        async with store.read() as tx:
            rows = await tx.all(
                "SELECT status, COUNT(*) FROM flow_runs WHERE flow = 'registration'"
                " AND person_id != 0 GROUP BY status"
            )
            outbox = await tx.all("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        await store.close()
        return rows, outbox

    rows, outbox = asyncio.run(read())
    counts = {r[0]: r[1] for r in rows}
    # The debrief chapter moves the clock past the camp: the last open seat offer expired
    # unanswered, and so did the offer that then went to the last person waiting.
    assert counts == {"registered": 9, "cancelled": 5}
    assert {r[0] for r in outbox} == {"sent"}


def test_demo_crews_chapter_places_everyone_registered_once_and_invites_each_crew(
    tmp_path: Path,
) -> None:
    """The crews chapter really happened: an approved assignment holding every registered
    person exactly once, and introductions with a crew-call invite an iCalendar parser reads."""
    import json

    import icalendar

    from gateway.channels.email.ical.invite import invite_ics
    from gateway.core.outbox import item_from_row

    database = tmp_path / "demo.sqlite3"
    assert main(["demo", "--database", str(database)]) == 0

    async def read() -> tuple[list[Any], Any, list[Any]]:
        store = await open_store(database)
        async with store.read() as tx:
            registered = await tx.all(
                "SELECT person_id FROM flow_runs WHERE flow = 'registration'"
                " AND status = 'registered'"
            )
            crews = await tx.one(
                "SELECT state FROM flow_runs WHERE flow = 'crews' AND person_id = 0"
            )
            groups = await tx.all("SELECT * FROM outbox WHERE kind = 'group' AND flow = 'crews'")
        await store.close()
        return registered, crews, groups

    registered, crews, groups = asyncio.run(read())
    assignment = json.loads(crews[0])["approved"]["assignment"]
    assert sorted(int(p) for p in assignment) == sorted(r[0] for r in registered)
    assert len(set(assignment.values())) == 2
    items = [item_from_row(row) for row in groups]
    assert {i.channel.value for i in items} == {"email", "matrix"}
    for item in items:
        assert item.body.invite is not None
        ics = invite_ics(
            item.body.invite,
            organizer_email="camp@demo.test",
            organizer_name="Camp",
            attendee="someone@demo.test",
            dtstamp=item.created_at,
        )
        event = icalendar.Calendar.from_ical(ics).walk("VEVENT")[0]
        assert str(event["RRULE"].to_ical().decode()) == "FREQ=WEEKLY;COUNT=4"


def test_demo_with_too_few_people_for_crews_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--participants", "2"]) == 0
    assert "no crews with these numbers" in capsys.readouterr().out


def test_demo_debrief_chapter_asks_who_came_and_reports_what_it_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The debrief chapter asked exactly the registered people, closed, and the rate it
    printed is the database's."""
    import json

    database = tmp_path / "demo.sqlite3"
    assert main(["demo", "--database", str(database)]) == 0
    out = capsys.readouterr().out

    async def read() -> tuple[list[Any], Any, list[Any]]:
        store = await open_store(database)
        async with store.read() as tx:
            registered = await tx.all(
                "SELECT person_id FROM flow_runs WHERE flow = 'registration'"
                " AND status = 'registered'"
            )
            shared = await tx.one(
                "SELECT status, state FROM flow_runs WHERE flow = 'debrief' AND person_id = 0"
            )
            finished = await tx.all(
                "SELECT person_id FROM flow_runs WHERE flow = 'debrief' AND person_id != 0"
                " AND json_extract(state, '$.finished')"
            )
        await store.close()
        return registered, shared, finished

    registered, shared, finished = asyncio.run(read())
    state = json.loads(shared[1])
    assert shared[0] == "closed"
    assert sorted(state["asked"]) == sorted(r[0] for r in registered)
    assert f"{len(finished)} of {len(registered)} people answered" in out
    # Everyone who answered finished, even those with a ride proposal still open in travel:
    # their answers reached the debrief, not the flow that owns a command word.
    assert f"  {len(finished)} answer (by chat one at a time" in out
    assert "A reminder goes to the" in out and "crew(s) hear what was shared" in out
    public = out[out.index("(shared with everyone)") :]
    assert sum(len(v) for v in state["anonymous"].values()) > 0
    assert "answer(s)" in public


def test_demo_travel_chapter_proposes_introduces_and_replans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The travel chapter's cars are drivable plans from the database, its introductions
    went to both sides, and the driver who cancelled has no ride left."""
    import json

    database = tmp_path / "demo.sqlite3"
    assert main(["demo", "--database", str(database)]) == 0
    out = capsys.readouterr().out

    async def read() -> Any:
        store = await open_store(database)
        async with store.read() as tx:
            row = await tx.one(
                "SELECT state FROM flow_runs WHERE flow = 'travel' AND person_id = 0"
            )
        await store.close()
        return json.loads(row[0])

    state = asyncio.run(read())
    statuses = [m["status"] for m in state["matches"].values()]
    assert "cancelled" in statuses and "proposed" in statuses
    assert "proposals go out, without contact details" in out
    assert "car(s) introduced, each with a departure invite" in out
    assert "so that ride is off" in out
    cancelled = {m["driver"] for m in state["matches"].values() if m["status"] == "cancelled"}
    for car in state["plan"]["to"]["cars"]:
        assert car["driver"] not in cancelled  # the re-plan has no car of the one who left

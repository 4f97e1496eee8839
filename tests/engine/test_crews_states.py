"""The crews flow's states as models: rows the plain-dict flow wrote load and write back as
they were; a row that does not fit fails loudly, in the engine and in the organisers'
operations alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flows.crews.flow import Crews
from flows.crews.state import CrewsRun, CrewsShared
from gateway.core.states import BadState, StateCodec
from gateway.model import GATHERING_SUBJECT, PersonId, Target
from gateway.ops.commands import send_command
from gateway.ops.crews.commands import read_state
from tests.kit.engine import Harness, gathering

FIXTURE = Path(__file__).parent.parent / "fixtures" / "states" / "crews-before-models.json"
ROWS = json.loads(FIXTURE.read_text())["rows"]
CODEC = StateCodec({"crews": Crews()})
DEMO = ROWS[0]["state"]


def _target(person: int) -> Target:
    return Target("camp", "crews", PersonId(person))


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["note"])
def test_rows_written_before_the_models_load_and_write_back_unchanged(
    row: dict[str, Any],
) -> None:
    target = _target(row["person"])
    state = CODEC.load(target, json.dumps(row["state"]))
    assert isinstance(state, CrewsShared if row["person"] == GATHERING_SUBJECT else CrewsRun)
    written = CODEC.dump(target, state)
    assert json.loads(written) == row["state"]  # every key, null and empty container kept
    assert CODEC.dump(target, CODEC.load(target, written)) == written


def test_the_demo_row_reads_as_typed_values() -> None:
    state = CODEC.load(_target(GATHERING_SUBJECT), json.dumps(DEMO))
    assert isinstance(state, CrewsShared) and state.approved is not None
    assert state.approved.first_call is not None
    assert [day.isoformat() for day in state.approved.first_call.values()] == [
        "2027-03-10",
        "2027-03-10",
    ]
    assert state.approved.zones[1] == "Europe/Lisbon"  # crews by index, "1" in the JSON
    assert state.approved.approved_at.tzinfo is not None


BAD = [
    ({"approved": {**DEMO["approved"], "round": "1"}}, "approved.round"),
    ({"approved": {k: v for k, v in DEMO["approved"].items() if k != "zones"}}, "zones"),
    ({"approved": {**DEMO["approved"], "first_call": {"0": "next week"}}}, "first_call"),
    ({"pins": {"3": "1"}}, "pins.3"),
    ({"proposal": {"kind": "best", "round": 1, "assignment": {}, "proposed_at": "x"}}, "kind"),
    ({"history": [{"round": 1}]}, "history.0.assignment"),
    ({"solving": {"request": 1, "kind": "initial", "since": "2027-05-03T10:00:00"}}, "since"),
]


@pytest.mark.parametrize(("state", "where"), BAD, ids=[where for _, where in BAD])
def test_a_gathering_row_that_does_not_fit_is_refused_naming_the_field(
    state: dict[str, Any], where: str
) -> None:
    with pytest.raises(BadState, match=rf"(?s)camp/crews/person 0.*CrewsShared.*{where}"):
        CODEC.load(_target(GATHERING_SUBJECT), json.dumps(state))


def test_a_members_row_that_does_not_fit_is_refused() -> None:
    with pytest.raises(BadState, match=r"(?s)CrewsRun.*call"):
        CODEC.load(_target(4), '{"call": true}')


async def _crews_row(gw: Harness) -> tuple[str, str]:
    """The gathering run's state and when it was last written."""
    async with gw.store.read() as tx:
        row = await tx.one(
            "SELECT state, updated_at FROM flow_runs WHERE flow = 'crews' AND person_id = ?",
            (GATHERING_SUBJECT,),
        )
    assert row is not None
    return str(row[0]), str(row[1])


async def _set_crews_row(gw: Harness, state: str) -> None:
    async with gw.store.transaction() as tx:
        await tx.execute(
            "UPDATE flow_runs SET state = ?, updated_at = ''"
            " WHERE flow = 'crews' AND person_id = ?",
            (state, GATHERING_SUBJECT),
        )


async def test_the_engine_steps_on_an_old_row_and_writes_it_back(tmp_path: Path) -> None:
    gw = await Harness.open(tmp_path, {"crews": Crews()}, {"camp": gathering()})
    try:
        await send_command(gw.engine, "camp", "crews", "unpin", {"person": "99"})
        await _set_crews_row(gw, json.dumps(DEMO))
        # A refused command still writes back the state it was given.
        handled = await send_command(gw.engine, "camp", "crews", "unpin", {"person": "99"})
        assert handled.outcome == "applied"
        state, written_at = await _crews_row(gw)
        assert written_at != "" and json.loads(state) == DEMO
        assert await read_state(gw.store, "camp") == CrewsShared.from_stored(json.dumps(DEMO))
    finally:
        await gw.close()


async def test_bad_crews_json_fails_the_command_and_the_operation(tmp_path: Path) -> None:
    gw = await Harness.open(tmp_path, {"crews": Crews()}, {"camp": gathering()})
    try:
        await send_command(gw.engine, "camp", "crews", "unpin", {"person": "99"})
        bad = json.dumps({**DEMO, "requests": "one"})
        await _set_crews_row(gw, bad)
        handled = await send_command(
            gw.engine, "camp", "crews", "unpin", {"person": "99"}, external_id="bad-crews"
        )
        assert handled.outcome == "failed"
        assert await _crews_row(gw) == (bad, "")  # left as it was
        async with gw.store.read() as tx:
            row = await tx.one("SELECT detail FROM inbox WHERE external_id = 'bad-crews'")
        assert row is not None and "BadState" in row[0] and "CrewsShared" in row[0]
        with pytest.raises(ValidationError, match="requests"):
            await read_state(gw.store, "camp")
    finally:
        await gw.close()

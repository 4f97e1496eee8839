"""Flow states as models: loaded and checked by the engine, stored as the JSON they always were.

A small flow with models shows the mechanism (defaults for a new run, typed values, unknown
keys kept, bad JSON refused before the step, the wrong class refused before the write); rows
written before the flows had models load into them and write back the same JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from flows.base import FlowState, Moment, Outcome, StepContext, absent, state_model
from flows.debrief.flow import Debrief
from flows.linking import Linking
from flows.registration.flow import Registration
from flows.travel.flow import Travel
from gateway.core.engine import Engine
from gateway.core.states import BadState, StateCodec
from gateway.model import GATHERING_SUBJECT, Identity, InboundMessage, PersonId, Target
from gateway.store import open_store
from tests.kit.engine import Clock, Harness, gathering, inbound

FIXTURE = Path(__file__).parent.parent / "fixtures" / "states" / "before-models.json"
ANA = Identity.email("ana@example.org", "Ana")
START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


class Tally(FlowState):
    count: int = 0
    last: Moment | None = absent()


class Total(FlowState):
    messages: int = 0


class Counting:
    """Counts a person's messages and the gathering's; "wrong" returns the wrong class."""

    name: ClassVar[str] = "registration"
    reads: ClassVar[tuple[str, ...]] = ()
    state_model: ClassVar[type[Tally]] = Tally
    shared_model: ClassVar[type[Total]] = Total
    seen: ClassVar[list[tuple[type, type]]] = []

    def wants(self, message: InboundMessage, status: str) -> bool:
        return True

    def step(self, ctx: StepContext[Tally, Total]) -> Outcome:
        Counting.seen.append((type(ctx.state), type(ctx.shared)))
        if ctx.message.text == "wrong":
            return Outcome(state=ctx.shared)  # a Total where a Tally belongs
        ctx.state.count += 1
        ctx.state.last = ctx.now
        ctx.shared.messages += 1
        return Outcome(state=ctx.state, shared=ctx.shared, status=f"n{ctx.state.count}")


async def _row(gw: Harness, person: int) -> str | None:
    async with gw.store.read() as tx:
        row = await tx.one(
            "SELECT state FROM flow_runs WHERE flow = 'registration' AND person_id = ?", (person,)
        )
    return str(row[0]) if row else None


async def _set_row(gw: Harness, person: int, state: str) -> None:
    async with gw.store.transaction() as tx:
        await tx.execute(
            "UPDATE flow_runs SET state = ? WHERE flow = 'registration' AND person_id = ?",
            (state, person),
        )


async def test_a_new_run_starts_from_defaults_and_is_stored_as_json(tmp_path: Path) -> None:
    Counting.seen.clear()
    gw = await Harness.open(tmp_path, {"registration": Counting()}, {"camp": gathering()})
    try:
        await gw.say(ANA, "hello")
        await gw.say(ANA, "again")
        person = await gw.person_of(ANA)
        assert Counting.seen == [(Tally, Total), (Tally, Total)]
        assert json.loads(await _row(gw, person) or "") == {
            "count": 2,
            "last": START.isoformat(),  # isoformat, as flows wrote times before
        }
        assert json.loads(await _row(gw, GATHERING_SUBJECT) or "") == {"messages": 2}
    finally:
        await gw.close()


async def test_keys_the_model_does_not_know_survive_a_step(tmp_path: Path) -> None:
    """A newer version's keys, met after a rollback, are written back for the roll-forward."""
    gw = await Harness.open(tmp_path, {"registration": Counting()}, {"camp": gathering()})
    try:
        await gw.say(ANA, "hello")
        person = await gw.person_of(ANA)
        await _set_row(gw, person, json.dumps({"count": 5, "from_the_future": {"x": [1]}}))
        await gw.say(ANA, "again")
        stored = json.loads(await _row(gw, person) or "")
        assert stored["count"] == 6 and stored["from_the_future"] == {"x": [1]}
    finally:
        await gw.close()


async def test_a_stored_state_that_does_not_fit_fails_the_message_not_the_step(
    tmp_path: Path,
) -> None:
    Counting.seen.clear()
    clock = Clock(START)
    gw = await Harness.open(tmp_path, {"registration": Counting()}, {"camp": gathering()}, clock)
    try:
        await gw.say(ANA, "hello")
        person = await gw.person_of(ANA)
        await _set_row(gw, person, json.dumps({"count": "2"}))  # a string, even of digits
        handled = await gw.engine.handle(inbound(ANA, "again", at=START, external_id="bad-row"))
        assert handled.outcome == "failed"
        assert len(Counting.seen) == 1  # the step never saw the bad row
        assert json.loads(await _row(gw, person) or "") == {"count": "2"}  # left as it was
        async with gw.store.read() as tx:
            row = await tx.one("SELECT detail FROM inbox WHERE external_id = 'bad-row'")
        assert row is not None and "BadState" in row[0] and "Tally" in row[0]
    finally:
        await gw.close()


class Peeking(Counting):
    """Counting that reads the gathering's state only when asked "total"."""

    def step(self, ctx: StepContext[Tally, Total]) -> Outcome:
        if ctx.message.text != "total":
            ctx.state.count += 1
            return Outcome(state=ctx.state, status=f"n{ctx.state.count}")
        return super().step(ctx)


async def test_the_gathering_state_is_loaded_only_by_a_step_that_reads_it(tmp_path: Path) -> None:
    """A bad gathering-level row does not touch steps that never read it; one that reads it
    fails the message whole, as a bad row of the person's own run does."""
    clock = Clock(START)
    gw = await Harness.open(tmp_path, {"registration": Peeking()}, {"camp": gathering()}, clock)
    try:
        await gw.say(ANA, "total")  # makes the gathering-level row
        await _set_row(gw, GATHERING_SUBJECT, json.dumps({"messages": "many"}))
        applied = await gw.engine.handle(inbound(ANA, "hello", at=START, external_id="quiet"))
        assert applied.outcome == "applied"
        failed = await gw.engine.handle(inbound(ANA, "total", at=START, external_id="reads"))
        assert failed.outcome == "failed"
        async with gw.store.read() as tx:
            row = await tx.one("SELECT detail FROM inbox WHERE external_id = 'reads'")
        assert row is not None and "BadState" in row[0] and "Total" in row[0]
        person = await gw.person_of(ANA)
        assert json.loads(await _row(gw, person) or "")["count"] == 2  # "total" not applied
    finally:
        await gw.close()


async def test_a_step_returning_another_class_is_refused_before_the_write(
    tmp_path: Path,
) -> None:
    gw = await Harness.open(tmp_path, {"registration": Counting()}, {"camp": gathering()})
    try:
        await gw.say(ANA, "hello")
        person = await gw.person_of(ANA)
        before = await _row(gw, person)
        handled = await gw.engine.handle(inbound(ANA, "wrong", at=START))
        assert handled.outcome == "failed"
        assert await _row(gw, person) == before
    finally:
        await gw.close()


FLOWS = {f.name: f for f in (Registration(), Debrief(), Travel(), Linking())}


def _without_empty(value: Any) -> Any:
    """JSON with empty {} and [] left out, recursively: an empty container and a missing key
    read the same to every reader (`.get(key, {})`)."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


@pytest.mark.parametrize(
    "row",
    json.loads(FIXTURE.read_text())["rows"],
    ids=lambda row: f"{row['flow']}-{row['person']}",
)
def test_rows_written_before_the_models_load_and_write_back_unchanged(
    row: dict[str, Any],
) -> None:
    target = Target("camp", row["flow"], PersonId(row["person"]))
    codec = StateCodec(FLOWS)
    state = codec.load(target, json.dumps(row["state"]))
    assert isinstance(state, state_model(FLOWS[row["flow"]], target.person == GATHERING_SUBJECT))
    again = json.loads(codec.dump(target, state))
    assert _without_empty(again) == _without_empty(row["state"])


def test_a_row_of_the_wrong_shape_names_the_run_and_the_model() -> None:
    codec = StateCodec(FLOWS)
    target = Target("camp", "registration", PersonId(3))
    wrong = r"(?s)camp/registration/person 3.*RegistrationRun.*attendance"
    with pytest.raises(BadState, match=wrong):
        codec.load(target, json.dumps({"status": "registered", "attendance": "maybe"}))
    with pytest.raises(BadState, match="Seats"):
        codec.load(Target("camp", "registration", GATHERING_SUBJECT), '{"offers": {"x": 1}}')


class Unmodelled:
    """A flow as flows were before their states were models: it names none."""

    name: ClassVar[str] = "plain"
    reads: ClassVar[tuple[str, ...]] = ()

    def wants(self, message: InboundMessage, status: str) -> bool:
        return True

    def step(self, ctx: StepContext) -> Outcome:
        return Outcome()


class HalfModelled(Unmodelled):
    state_model: ClassVar[type[FlowState]] = FlowState
    shared_model: ClassVar[object] = dict  # not a FlowState


@pytest.mark.parametrize(
    ("flow", "missing"), [(Unmodelled(), "state_model"), (HalfModelled(), "shared_model")]
)
async def test_the_engine_refuses_a_flow_without_models_when_it_is_built(
    tmp_path: Path, flow: object, missing: str
) -> None:
    store = await open_store(tmp_path / "gateway.sqlite3")
    try:
        with pytest.raises(
            TypeError, match=rf"flow 'plain' \({type(flow).__name__}\) declares no {missing}"
        ):
            Engine(store, {"plain": flow}, {"camp": gathering()})  # type: ignore[dict-item]
    finally:
        await store.close()

"""Crew solving as a durable job, end to end in the engine: the organiser who asked hears
"solving…" at once and gets the proposal when the job is done — in their Matrix room
through the outbox — once, even when the service stops in between; an older solve that
finishes late does not replace a newer proposal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from flows.config import CrewsConfig
from gateway.core.engine import Handled
from gateway.core.jobs import JobRunner
from gateway.model import Caller, Channel, Identity, InboundKind, InboundMessage
from gateway.ops.router import Router
from tests.engine.test_debrief_engine import ANA, BO, CY, DI, FLOWS, camp, register
from tests.kit.engine import Clock, Harness

ORGANISER = Identity.matrix("@org:example.org", "Org")
ROOM = "!organisers:example.org"


async def open_camp(tmp_path: Path) -> Harness:
    g = camp().model_copy(update={"crews": CrewsConfig(min_size=2, max_size=2, solve_seconds=1)})
    gw = await Harness.open(tmp_path, FLOWS, {"camp": g}, Clock(datetime(2027, 6, 1, tzinfo=UTC)))
    gw.engine.organisers = frozenset({ORGANISER})
    gw.engine.desk = Router(gw.engine).handle
    return gw


def in_the_room(text: str, event: str) -> InboundMessage:
    """A "!crews …" line an organiser wrote in the organisers' room."""
    return InboundMessage(
        channel=Channel.MATRIX,
        external_id=event,
        kind=InboundKind.COMMAND,
        received_at=datetime(2027, 6, 1, tzinfo=UTC),
        sender=ORGANISER,
        text=text,
        caller=Caller(Channel.MATRIX, ROOM),
    )


async def run_jobs(gw: Harness) -> list[Handled]:
    runner = JobRunner(gw.engine, executor=lambda: ThreadPoolExecutor(max_workers=1))
    try:
        return await runner.run_pending()
    finally:
        runner.close()


async def room_messages(gw: Harness) -> list[str]:
    return [i.body.text for i in await gw.deliver() if i.address == ROOM]


async def test_the_proposal_reaches_the_organisers_room_when_solved(tmp_path: Path) -> None:
    gw = await open_camp(tmp_path)
    try:
        for who, name in ((ANA, "Ana"), (BO, "Bo"), (CY, "Cy"), (DI, "Di")):
            await register(gw, who, name)
        await gw.handle(in_the_room("!crews camp propose --seconds 1", "$propose"))
        [solving] = await room_messages(gw)
        assert solving.startswith("Solving crews for Summer Camp (up to 1 s)")
        assert len(await run_jobs(gw)) == 1
        [proposal] = await room_messages(gw)
        assert proposal.startswith("Initial proposal, round 1, for Summer Camp: 4 people")
        assert "  - Ana" in proposal and "Approve with: !crews camp approve" in proposal

        await gw.handle(in_the_room("!crews camp approve", "$approve"))
        assert "crews approved and announced (2 crews)" in await room_messages(gw)
    finally:
        await gw.close()


async def test_a_solve_pending_at_a_crash_runs_after_the_restart_and_answers_once(
    tmp_path: Path,
) -> None:
    gw = await open_camp(tmp_path)
    for who, name in ((ANA, "Ana"), (BO, "Bo"), (CY, "Cy"), (DI, "Di")):
        await register(gw, who, name)
    await gw.handle(in_the_room("!crews camp propose", "$propose"))
    assert len(await room_messages(gw)) == 1  # "solving…"
    await gw.close()  # the service stops before the job ran

    gw = await open_camp(tmp_path)
    try:
        # The room redelivers the command after the restart: a duplicate, not a new solve.
        await gw.handle(in_the_room("!crews camp propose", "$propose"))
        assert len(await run_jobs(gw)) == 1
        assert await run_jobs(gw) == []
        messages = await room_messages(gw)
        assert len(messages) == 1 and messages[0].startswith("Initial proposal")
        _, state = await gw.run(0, "crews")
        assert state["requests"] == 1 and "solving" not in state
        assert len(state["proposal"]["assignment"]) == 4
    finally:
        await gw.close()


async def test_an_older_solve_finishing_last_does_not_replace_the_newer_proposal(
    tmp_path: Path,
) -> None:
    gw = await open_camp(tmp_path)
    try:
        ids = [await register(gw, who, name) for who, name in ((ANA, "Ana"), (BO, "Bo"))]
        ids += [await register(gw, who, name) for who, name in ((CY, "Cy"), (DI, "Di"))]
        router = Router(gw.engine)
        await router.run("crews camp propose --seed 1")
        # The newer request pins Ana and Bo together (its job is the second one).
        await router.run(f"crews camp pin {ids[0]} 2")
        await router.run(f"crews camp pin {ids[1]} 2")
        # The first job is slow: it ends last (set aside while the others run).
        async with gw.store.transaction() as tx:
            await tx.execute("UPDATE jobs SET status = 'done' WHERE id = 1")
        second, third = await run_jobs(gw)
        # The second request was superseded by the third while it ran: no answer, no change.
        assert second.replies == () and len(third.replies) == 1
        _, newer = await gw.run(0, "crews")
        crew_of = newer["proposal"]["assignment"]
        assert crew_of[str(ids[0])] == crew_of[str(ids[1])] == 1
        async with gw.store.transaction() as tx:
            await tx.execute("UPDATE jobs SET status = 'pending' WHERE id = 1")
        [first] = await run_jobs(gw)
        assert first.replies == ()
        _, state = await gw.run(0, "crews")
        assert state["proposal"] == newer["proposal"] and state["requests"] == 3
    finally:
        await gw.close()

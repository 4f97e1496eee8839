"""The demo's travel chapter: weeks before the camp, who drives and who needs a ride.

Three weeks before, everyone registered is asked how they travel (their registration city is
their default town); a week before, the matching job plans the cars; each rider and driver
is proposed the other without contact details; both say yes and are introduced with a
departure invite; then a driver cancels, and their riders are told and, where another car
can take them, proposed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from flows.common.forms import number_of, pending
from flows.travel import questions as travel_questions
from flows.travel.questions import Mode
from flows.travel.state import PersonStatus, TravelRun
from gateway.core.jobs import JobRunner
from gateway.demo.simulate import SimulatedPerson
from gateway.demo.world import Demo, transcript
from gateway.model import Channel, OutKind
from gateway.ops import travel as travel_ops

#: How the demo's people travel, in turn.
MODES = (Mode.DRIVE, Mode.RIDE, Mode.RIDE, Mode.COMPANY, Mode.RIDE, Mode.ALONE)
ANSWERS = {
    "leave_from": "9:00",
    "leave_until": "12:00",
    "seats": "3",
    "detour": "skip",
    "back_from": "15:00",
    "back_until": "18:00",
    "share_contact": "yes",
    "notes": "skip",
}


async def travel_chapter(demo: Demo, people: Sequence[SimulatedPerson], number: int) -> None:
    g = demo.gathering
    if g.travel is None:
        return
    print(f"\n{number}. Three weeks before: how is everyone travelling?")
    await demo.engine.schedule()
    starts = datetime.combine(travel_questions.first_day(g), datetime.min.time(), g.zone)
    await demo.at(starts - timedelta(days=g.travel.ask_days_before))
    travelling = [p for p in people if (await _state(demo, p)).status == PersonStatus.ASKED]
    for n, person in enumerate(travelling):
        await _answer(demo, person, MODES[n % len(MODES)])
    counts = {m: sum(1 for n in range(len(travelling)) if MODES[n % len(MODES)] == m) for m in Mode}
    print(
        f"  {len(travelling)} asked: {counts[Mode.DRIVE]} drive, {counts[Mode.RIDE]} need a ride,"
        f" {counts[Mode.COMPANY]} would like company on the train, {counts[Mode.ALONE]} go alone"
    )

    print(f"\n{number + 1}. A week before: the matching job plans the cars (gateway travel plan)")
    mark = demo.mark()
    await demo.at(starts - timedelta(days=g.travel.plan_days_before))
    await _run_jobs(demo)
    proposals = [i for items in demo.since(mark).values() for i in items]
    plan = await travel_ops.load(demo.engine, g.slug)
    print("\n".join("    " + line for line in travel_ops.describe(plan).splitlines()[:14]))
    print(f"  {len(proposals)} proposals go out, without contact details:")
    print(transcript(proposals[:1], limit=1))

    for person in travelling:
        if await _proposed(demo, person):
            await demo.say(person, "yes")
    rides = [
        i
        for items in demo.postbox.delivered.values()
        for i in items
        if i.kind == OutKind.GROUP and i.body.invite is not None and "-ride-" in i.body.invite.uid
    ]
    cars = {i.address for i in rides}
    print(f"  everyone says yes: {len(cars)} car(s) introduced, each with a departure invite")
    print(transcript(rides[:1], limit=1))

    cars_there = plan.plan.to.cars if plan.plan.to else []
    driver_id = int(cars_there[0].driver) if cars_there else None
    ids = [await demo.person_id(p) for p in travelling]
    driver = next((p for p, i in zip(travelling, ids, strict=True) if i == driver_id), None)
    if driver is not None:
        print(f"\n  {driver.name} can't drive after all (change 1 → I travel on my own):")
        mark = demo.mark()
        await demo.say(driver, "change 1")
        if driver.channel == Channel.MATRIX:
            await demo.say(driver, "4")
        else:
            await demo.say(driver, "", answers={1: "4"})
        await _run_jobs(demo)
        told = [i for items in demo.since(mark).values() for i in items if "is off" in i.body.text]
        print(transcript(told, limit=1))
        after = await travel_ops.load(demo.engine, g.slug)
        statuses: dict[str, int] = {}
        for match in after.state.matches.values():
            statuses[match.status] = statuses.get(match.status, 0) + 1
        print(
            "  their riders are told; the re-plan keeps every other car: rides now "
            + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        )


async def _run_jobs(demo: Demo) -> None:
    """The job runner's turn (in the service it runs beside the timers, in a process)."""
    runner = JobRunner(demo.engine, executor=lambda: ThreadPoolExecutor(max_workers=1))
    try:
        await runner.run_pending()
    finally:
        runner.close()
    await demo.deliver()


async def _answer(demo: Demo, person: SimulatedPerson, mode: Mode) -> None:
    """Answer the travel questions the way the channel invites: one by one, or by form."""
    g = demo.gathering
    state = await _state(demo, person)
    answers: dict[str, str] = {"mode": str(travel_questions.MODES.index(mode) + 1), **ANSWERS}
    if "origin" not in state.answers:
        answers["origin"] = person.answers.get("city") and str(person.answers["city"]) or "Lisbon"
    for _ in range(20):
        state = await _state(demo, person)
        asked = travel_questions.questions(g, state)
        todo = pending(asked, state.answers)
        if not todo or state.status not in (PersonStatus.ASKED, None):
            return
        if person.channel == Channel.MATRIX:
            await demo.say(person, answers.get(todo[0].id, "skip"))
        else:
            form = {number_of(asked, q.id): answers.get(q.id, "skip") for q in todo}
            await demo.say(person, "", answers=form)
    raise RuntimeError(f"{person.name} could not answer the travel questions: {state}")


async def _state(demo: Demo, person: SimulatedPerson) -> TravelRun:
    async with demo.engine.store.read() as tx:
        row = await tx.one(
            "SELECT r.state FROM flow_runs r JOIN identities i ON i.person_id = r.person_id"
            " WHERE i.address = ? AND r.flow = 'travel'",
            (person.identity.address,),
        )
    return TravelRun.from_stored(row[0]) if row else TravelRun()


async def _proposed(demo: Demo, person: SimulatedPerson) -> bool:
    return (await _state(demo, person)).status == PersonStatus.PROPOSED

"""`gateway demo`: a small camp registers end to end, on embedded defaults.

Simulated participants (half on email, half on Matrix) talk to the real engine, flows,
templates, outbox and SQLite store; only the wire is replaced by a postbox that hands each
message to the simulated person it is addressed to. Time is simulated too, so a 48-hour seat
hold expires in a moment, through the real timer loop.
"""

from __future__ import annotations

import random
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from flows.config import GatheringConfig
from gateway.app.registry import default_flows
from gateway.channels.email.ical.invite import invite_ics
from gateway.core.engine import Engine
from gateway.core.jobs import JobRunner
from gateway.core.outbox import OutboxWorker
from gateway.core.timers import TimerLoop
from gateway.demo.debrief import debrief_chapter
from gateway.demo.simulate import SimulatedPerson
from gateway.demo.travel import travel_chapter
from gateway.demo.world import START, Demo, Postbox, SimulatedClock, transcript
from gateway.model import Channel, GroupBody, Identity, OutKind
from gateway.ops.reports import format_status, status_report
from gateway.ops.router import Router
from gateway.store import open_store

DEMO_GATHERING = GatheringConfig.model_validate(
    {
        "slug": "demo-camp",
        "name": "Demo Microsolidarity Camp",
        "timezone": "Europe/Lisbon",
        "starts": date(2027, 7, 12),
        "ends": date(2027, 7, 16),
        "venue": "Quinta do Vale, Alentejo",
        "capacity": 10,
        "registration": {
            "hold_hours": 48,
            "questions": [
                {
                    "id": "name",
                    "type": "text",
                    "prompt": "What name would you like to be called by?",
                },
                {"id": "city", "type": "city", "prompt": "Which city will you travel from?"},
                {
                    "id": "diet",
                    "type": "single_choice",
                    "prompt": "What do you eat?",
                    "options": ["vegan", "vegetarian", "omnivore"],
                },
                {
                    "id": "nights",
                    "type": "number",
                    "prompt": "How many nights will you stay?",
                    "min": 1,
                    "max": 4,
                },
                {"id": "first_camp", "type": "yes_no", "prompt": "Is this your first camp?"},
            ],
        },
        "crews": {
            "min_size": 3,
            "max_size": 5,
            "balance": [{"question": "first_camp", "mode": "spread"}],
            "solve_seconds": 2,
            "call_weekday": "WE",
            "call_time": "19:30",
            "call_count": 4,
        },
        "travel": {"venue_town": "Évora", "countries": ["PT", "ES"]},
        "debrief": {
            "after_end_hours": 12,
            "local_hour": 10,
            "answer_days": 7,
            "reminders": 1,
            "remind_every_days": 3,
            "questions": [
                {"id": "learned", "type": "text", "prompt": "What will you take home?"},
                {"id": "rating", "type": "scale", "prompt": "How was the camp for you, 1 to 5?"},
                {
                    "id": "change",
                    "type": "text",
                    "prompt": "What would you change next time?",
                    "required": False,
                },
            ],
        },
    }
)


async def run_demo(
    *, participants: int = 14, capacity: int = 10, database: Path | None = None
) -> int:
    gathering = DEMO_GATHERING.model_copy(update={"capacity": capacity})
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        path = database or Path(tmp) / "demo.sqlite3"
        store = await open_store(path, durability="normal")
        clock = SimulatedClock(START)
        postbox = Postbox()
        engine = Engine(
            store,
            default_flows(),
            {gathering.slug: gathering},
            clock=clock,
            organisers=[Identity.email("organisers@demo.test", "Organisers")],
        )
        outbox = OutboxWorker(
            store,
            {c: postbox.transport(c) for c in (Channel.EMAIL, Channel.MATRIX)},
            clock=clock,
            alert=engine.enqueue_alert_in,
            seed=1,
        )
        demo = Demo(engine, outbox, TimerLoop(engine, clock=clock), clock, postbox, gathering)
        try:
            await _story(demo, participants)
        finally:
            await store.close()
        print(f"\nDatabase: {path if database else '(temporary, removed)'}")
    return 0


async def _story(demo: Demo, participants: int) -> None:
    g = demo.gathering
    rng = random.Random(7)
    people = [
        SimulatedPerson(n, Channel.EMAIL if n % 2 else Channel.MATRIX, random.Random(rng.random()))
        for n in range(participants)
    ]
    print(
        f"{g.name}: {g.starts} – {g.ends}, {g.venue}; {g.capacity} seats,"
        f" {len(g.registration.questions)} questions, {participants} people registering.\n"
    )

    print("1. Everyone registers, each on their own channel")
    for n, person in enumerate(people, start=1):
        await demo.register(person)
        print(f"  [{n:>2}/{participants}] {await demo.status_line(person)}")

    for person in people[:2]:
        items = demo.postbox.delivered[person.identity.address]
        print(f"\n  What {person.name} ({person.channel.value}) received: {len(items)} messages")
        print(transcript(items[:2] + items[-1:]))

    registered = [p for p in people if "registered" in await demo.status_line(p)]
    waiting = [p for p in people if "waiting" in await demo.status_line(p)]
    if not registered or not waiting:
        print("\n(no waiting list with these numbers: try --participants 14 --capacity 10)")
    else:
        leaver, first_waiting = registered[0], waiting[0]
        print(
            f"\n2. {leaver.name} cancels; the seat is offered to {first_waiting.name}, who accepts"
        )
        await demo.say(leaver, "cancel")
        await demo.say(leaver, "yes")
        print(transcript(demo.postbox.delivered[first_waiting.identity.address][-1:], limit=1))
        await demo.say(first_waiting, "yes")
        for person in (leaver, first_waiting):
            print(f"  {await demo.status_line(person)}")

        if len(registered) > 1 and len(waiting) > 1:
            leaver, slow, next_one = (
                registered[1],
                waiting[1],
                waiting[2] if len(waiting) > 2 else None,
            )
            print(
                f"\n3. {leaver.name} cancels; {slow.name} is offered the seat but does not answer"
                f" within {g.registration.hold_hours:g} hours"
            )
            await demo.say(leaver, "cancel")
            await demo.say(leaver, "yes")
            demo.clock.now += g.registration.hold + timedelta(hours=1)
            fired = await demo.timers.fire_due()
            await demo.deliver()
            print(f"  {fired} timer(s) fired after the hold")
            for person in filter(None, (leaver, slow, next_one)):
                print(f"  {await demo.status_line(person)}")

    editor = registered[-1] if registered else people[0]
    print(f"\n4. {editor.name} changes an answer")
    replies = await demo.say(editor, "change diet")
    replies += await demo.say(editor, "vegan")
    print(transcript(replies, limit=2))

    print("\n5. The confirmation's calendar invite, as the email channel sends it (iMIP):")
    invite_item = next(
        (
            i
            for items in demo.postbox.delivered.values()
            for i in items
            if i.body.invite and i.channel == Channel.EMAIL
        ),
        None,
    )
    if invite_item and invite_item.body.invite:
        ics = invite_ics(
            invite_item.body.invite,
            organizer_email="camp@demo.test",
            organizer_name="Demo Camp",
            attendee=invite_item.address,
            dtstamp=demo.clock.now,
        ).decode()
        wanted = ("METHOD", "SUMMARY", "DTSTART", "DTEND", "LOCATION", "ATTENDEE", "SEQUENCE")
        for line in ics.replace("\r\n ", "").splitlines():  # unfolded, as a parser reads it
            if line.startswith(wanted):
                print(f"    {line}")

    await _crews_chapter(demo)
    await travel_chapter(demo, people, 7)
    await debrief_chapter(demo, people, 9)

    print("\n10. gateway status")
    report = await status_report(demo.engine.store, {g.slug: g})
    print("\n".join("  " + line for line in format_status(report).splitlines()))


async def _crews_chapter(demo: Demo) -> None:
    """Crews: the organisers propose, look, approve; introductions and crew-call invites go
    out through the same outbox, each member reached on their own channel."""
    g = demo.gathering
    print("\n6. The organisers propose crews (gateway crews propose), then approve them")
    router = Router(demo.engine)
    print("  " + (await router.run(f"crews {g.slug} propose")).text)
    # The job runner's turn: in the service it solves beside the engine, in a process.
    runner = JobRunner(demo.engine, executor=lambda: ThreadPoolExecutor(max_workers=1))
    try:
        solved = await runner.run_pending()
    finally:
        runner.close()
    proposal = "\n".join(reply for done in solved for reply in done.replies)
    if any(done.refused for done in solved):  # too few people for the crew sizes, say
        reason = proposal.strip().splitlines()[-1].strip(" -")
        print(f"  (no crews with these numbers: {reason}; try --participants 14)")
        return
    print("\n".join("    " + line for line in proposal.splitlines()[:12]))
    print("  " + (await router.run(f"crews {g.slug} approve")).text)
    await demo.deliver()
    groups = [
        item
        for items in demo.postbox.delivered.values()
        for item in items
        if item.kind == OutKind.GROUP
    ]
    for item in groups:
        body = item.body
        assert isinstance(body, GroupBody)
        calls = f", crew-call invite {body.invite.rrule}" if body.invite else ""
        who = f"{len(body.group_addresses)} on {item.channel.value}"
        print(f"  {body.subject or item.address}: introduction to {who}{calls}")
    if groups:
        print(transcript(groups[:1], limit=1))

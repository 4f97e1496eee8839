"""`gateway demo`: a small camp registers end to end, on embedded defaults.

Simulated participants (half on email, half on Matrix) talk to the real engine, flows,
templates, outbox and SQLite store; only the wire is replaced by a postbox that hands each
message to the simulated person it is addressed to. Time is simulated too, so a 48-hour seat
hold expires in a moment, through the real timer loop.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flows.common import forms
from flows.config import GatheringConfig
from gateway.app.registry import default_flows
from gateway.channels.email.ical.invite import invite_ics
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.core.timers import TimerLoop
from gateway.demo.simulate import SimulatedPerson
from gateway.model import Channel, Identity, OutboxItem, OutKind
from gateway.ops.crews import commands as crews_ops
from gateway.ops.reports import format_status, status_report
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
    }
)
START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


class SimulatedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Postbox:
    """Delivers outbox items to simulated people; records them per address."""

    delivered: dict[str, list[OutboxItem]] = field(default_factory=lambda: defaultdict(list))

    def transport(self, channel: Channel) -> PostboxTransport:
        return PostboxTransport(channel, self)


@dataclass
class PostboxTransport:
    channel: Channel
    postbox: Postbox

    async def send(self, item: OutboxItem) -> str:
        self.postbox.delivered[item.address].append(item)
        return f"demo-{item.idempotency_key}"


class Demo:
    def __init__(
        self,
        engine: Engine,
        outbox: OutboxWorker,
        timers: TimerLoop,
        clock: SimulatedClock,
        postbox: Postbox,
        gathering: GatheringConfig,
    ) -> None:
        self.engine, self.outbox, self.timers = engine, outbox, timers
        self.clock, self.postbox, self.gathering = clock, postbox, gathering
        self.reference = gathering.starts if isinstance(gathering.starts, date) else START.date()

    async def say(
        self, person: SimulatedPerson, text: str, answers: dict[int, str] | None = None
    ) -> list[OutboxItem]:
        """The person sends a message; return what they receive in answer."""
        self.clock.now += timedelta(minutes=1)
        message = person.says(text, at=self.clock.now)
        if answers:
            message = replace(message, answers=answers)
        received = self.postbox.delivered[person.identity.address]
        if person.channel == Channel.EMAIL and received:
            # A mail client's reply names the message it answers (In-Reply-To).
            message = replace(message, in_reply_to=f"demo-{received[-1].idempotency_key}")
        await self.engine.handle(message)
        return await self.deliver(person)

    async def deliver(self, person: SimulatedPerson | None = None) -> list[OutboxItem]:
        address = person.identity.address if person else None
        before = len(self.postbox.delivered[address]) if address else 0
        while await self.outbox.run_once():
            pass
        return self.postbox.delivered[address][before:] if address else []

    async def register(self, person: SimulatedPerson) -> str:
        """Hello, every answer the way the channel invites, then yes. Returns the last reply."""
        await self.say(person, "hello")
        questions = self.gathering.registration.questions
        if person.channel == Channel.EMAIL:
            # Email brings the whole form: answer each numbered question inline, once.
            answers: dict[int, str] = {}
            while (text := person.next_answer(questions, self.reference)) is not None:
                answered = [q for q in questions if q.id in person.answers]
                answers[forms.number_of(questions, answered[-1].id)] = text
            await self.say(person, "", answers=answers)
        else:
            while (text := person.next_answer(questions, self.reference)) is not None:
                await self.say(person, text)
        replies = await self.say(person, "yes")
        return replies[-1].text if replies else ""

    async def status_line(self, person: SimulatedPerson) -> str:
        async with self.engine.store.read() as tx:
            row = await tx.one(
                "SELECT r.status, json_extract(r.state, '$.left') FROM flow_runs r"
                " JOIN identities i ON i.person_id = r.person_id"
                " WHERE i.address = ? AND r.flow = 'registration'",
                (person.identity.address,),
            )
            shared = await tx.one(
                "SELECT state FROM flow_runs WHERE person_id = 0 AND flow = 'registration'"
            )
        status = row[0] if row else "?"
        note = f" ({row[1].replace('_', ' ')})" if row and row[1] and row[1] != status else ""
        if status == "waiting" and shared:
            waiting = json.loads(shared[0]).get("waiting", [])
            pid = await self._person_id(person)
            note = f", place {waiting.index(pid) + 1} on the waiting list" if pid in waiting else ""
        return f"{person.name:<8} {person.channel.value:<6} {status}{note}"

    async def _person_id(self, person: SimulatedPerson) -> int | None:
        async with self.engine.store.read() as tx:
            row = await tx.one(
                "SELECT person_id FROM identities WHERE address = ?", (person.identity.address,)
            )
        return int(row[0]) if row else None


def transcript(items: list[OutboxItem], limit: int = 3) -> str:
    lines = []
    for item in items:
        first = next((line for line in item.text.splitlines() if line.strip()), "")
        extra = f"  [poll: {' / '.join(item.options)}]" if item.options else ""
        extra += "  [+ calendar invite]" if item.invite else ""
        lines.append(f"    bot: {first[:90]}{extra}")
    return "\n".join(
        lines[:limit] + ([f"    … {len(lines) - limit} more"] if len(lines) > limit else [])
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
            if i.invite and i.channel == Channel.EMAIL
        ),
        None,
    )
    if invite_item and invite_item.invite:
        ics = invite_ics(
            invite_item.invite,
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

    print("\n7. gateway status")
    report = await status_report(demo.engine.store, {g.slug: g})
    print("\n".join("  " + line for line in format_status(report).splitlines()))


async def _crews_chapter(demo: Demo) -> None:
    """Crews: the organisers propose, look, approve; introductions and crew-call invites go
    out through the same outbox, each member reached on their own channel."""
    g = demo.gathering
    print("\n6. The organisers propose crews (gateway crews propose), then approve them")
    try:
        proposal = await crews_ops.propose(demo.engine, g.slug)
    except crews_ops.CrewsError as exc:  # too few people for the crew sizes, say
        reason = str(exc).splitlines()[-1].strip(" -")
        print(f"  (no crews with these numbers: {reason}; try --participants 14)")
        return
    print("\n".join("    " + line for line in proposal.splitlines()[:12]))
    print("  " + await crews_ops.approve(demo.engine, g.slug))
    await demo.deliver()
    groups = [
        item
        for items in demo.postbox.delivered.values()
        for item in items
        if item.kind == OutKind.GROUP
    ]
    for item in groups:
        calls = f", crew-call invite {item.invite.rrule}" if item.invite else ""
        who = f"{len(item.group_addresses)} on {item.channel.value}"
        print(f"  {item.subject or item.address}: introduction to {who}{calls}")
    if groups:
        print(transcript(groups[:1], limit=1))

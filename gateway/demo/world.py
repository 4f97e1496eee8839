"""The demo's world: a simulated clock, a postbox instead of the wire, and the `Demo` that
lets simulated people talk to the real engine. Chapters of the story use it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from flows.common import forms
from flows.config import GatheringConfig
from flows.registration.seats import Seats
from flows.registration.state import RegistrationRun
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.core.timers import TimerLoop
from gateway.demo.simulate import SimulatedPerson
from gateway.model import Channel, OutboxItem, PersonId, PollBody

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
        return replies[-1].body.text if replies else ""

    async def status_line(self, person: SimulatedPerson) -> str:
        async with self.engine.store.read() as tx:
            row = await tx.one(
                "SELECT r.status, r.state FROM flow_runs r"
                " JOIN identities i ON i.person_id = r.person_id"
                " WHERE i.address = ? AND r.flow = 'registration'",
                (person.identity.address,),
            )
            shared = await tx.one(
                "SELECT state FROM flow_runs WHERE person_id = 0 AND flow = 'registration'"
            )
        status = row[0] if row else "?"
        left = RegistrationRun.from_stored(row[1]).left if row else None
        note = f" ({left.replace('_', ' ')})" if left and left != status else ""
        if status == "waiting" and shared:
            pid = await self.person_id(person)
            place = Seats.from_stored(shared[0]).place(PersonId(pid or 0))
            note = f", place {place} on the waiting list" if place else ""
        return f"{person.name:<8} {person.channel.value:<6} {status}{note}"

    async def person_id(self, person: SimulatedPerson) -> int | None:
        async with self.engine.store.read() as tx:
            row = await tx.one(
                "SELECT person_id FROM identities WHERE address = ?", (person.identity.address,)
            )
        return int(row[0]) if row else None

    def mark(self) -> dict[str, int]:
        """Where each address's postbox stands now (for `since`)."""
        return {address: len(items) for address, items in self.postbox.delivered.items()}

    def since(self, mark: dict[str, int]) -> dict[str, list[OutboxItem]]:
        """What each address received after `mark`."""
        fresh = {
            address: items[mark.get(address, 0) :]
            for address, items in self.postbox.delivered.items()
        }
        return {address: items for address, items in fresh.items() if items}

    async def at(self, moment: datetime) -> dict[str, list[OutboxItem]]:
        """Move the simulated clock to `moment` and fire what is due; what each address
        received meanwhile."""
        mark = self.mark()
        self.clock.now = moment
        await self.timers.fire_due()
        await self.deliver()
        return self.since(mark)


def transcript(items: list[OutboxItem], limit: int = 3) -> str:
    lines = []
    for item in items:
        first = next((line for line in item.body.text.splitlines() if line.strip()), "")
        poll = item.body if isinstance(item.body, PollBody) else None
        extra = f"  [poll: {' / '.join(poll.options)}]" if poll else ""
        extra += "  [+ calendar invite]" if item.body.invite else ""
        lines.append(f"    bot: {first[:90]}{extra}")
    return "\n".join(
        lines[:limit] + ([f"    … {len(lines) - limit} more"] if len(lines) > limit else [])
    )

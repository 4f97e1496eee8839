"""The test kit every test and bench shares: the one test flow (`Echo`), its templates and
renderer, a hand clock, a recording transport, a harness, and message builders.

`Harness` is the service as `gateway run` wires it (`build_engine`, `Service`: a real SQLite
store in a temporary directory, the engine, outbox worker and timers, all on one clock the
test moves by hand) with `Recorder` transports that record what would have been sent; the
test drives it step by step instead of running it. Fakes are for pure-logic tests of the
engine and flows; the channels themselves are proven against real servers in tests/wire,
where `tests.kit.matrix.running_bot` and `tests.kit.email.gateway` build the same service
with the real transports.

What still builds parts by hand, and why: tests/engine/test_engine.py and test_outbox.py
construct `Engine` and `OutboxWorker` themselves because the part is what they test (a
worker that "crashed" mid-send, a second store on the same file); bench/email_fanout.py's
"plumbing" run gives the worker a transport that skips composing, which is the figure it
measures and which no production wiring would build.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from flows.base import Flow, FlowState, JobFunction, Outcome, StepContext, absent
from flows.config import GatheringConfig
from gateway.app.channels import organisers_router
from gateway.app.service import Channels, Service, build_engine
from gateway.config import LoadedConfig, Organiser, ServiceConfig, StoreSettings
from gateway.core.engine import Engine, Handled
from gateway.core.outbox import OutboxWorker
from gateway.core.render import Renderer
from gateway.core.timers import TimerLoop
from gateway.model import (
    GATHERING_SUBJECT,
    JOB_DONE,
    CalendarAnswer,
    Channel,
    Emit,
    Identity,
    IdentityKind,
    InboundKind,
    InboundMessage,
    Invite,
    OutboxItem,
    Outgoing,
    OutKind,
    PersonId,
    RunJob,
    SetTimer,
    Target,
)
from gateway.ports import PermanentError, TransientError
from gateway.store.db import Store

_ids = itertools.count(1)


#: A small gathering file (capacity 20, one choice question) for config and service tests.
RETREAT_TOML = """
slug = "retreat"
name = "Retreat"
starts = 2027-03-01
ends = 2027-03-03
capacity = 20
[[registration.questions]]
id = "diet"
type = "single_choice"
prompt = "Diet?"
options = ["vegan", "omnivore"]
"""


def gathering(slug: str = "camp", capacity: int = 10) -> GatheringConfig:
    return GatheringConfig(
        slug=slug,
        name=slug.title(),
        starts=date(2027, 7, 1),
        ends=date(2027, 7, 5),
        capacity=capacity,
    )


def text(
    sender: str,
    body: str,
    *,
    at: datetime | None = None,
    external_id: str | None = None,
    channel: Channel = Channel.EMAIL,
) -> InboundMessage:
    identity = Identity.email(sender) if channel == Channel.EMAIL else Identity.matrix(sender)
    return InboundMessage(
        channel,
        external_id or f"m{next(_ids)}",
        InboundKind.TEXT,
        at or datetime.now(UTC),
        identity,
        text=body,
    )


def total(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The test flow's job: pure, deterministic, a little work (a stand-in for matching)."""
    return {"sum": sum(int(n) for n in payload["numbers"])}


def broken(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    raise ValueError("no route")


#: The calendar invite `Echo` sends on "yes" (its uid is what a calendar answers to).
INVITE_UID = "camp-2027@example.test"


class EchoRun(FlowState):
    """What Echo keeps of a person (see `Echo`)."""

    n: int = 0
    seen: list[str] = Field(default_factory=list)
    results: list[dict[str, Any]] = absent(factory=list)
    attendance: str | None = absent()
    answers: dict[str, str] = absent(factory=dict)


class EchoShared(FlowState):
    """What Echo keeps of the gathering: events it got, the people it saw run."""

    events: int = 0
    peers: list[int] = Field(default_factory=list)


class Echo:
    """The one test flow: it answers every message so a test sees what the gateway understood,
    and keeps what a test needs to count. Engine, outbox, wire tests and benches all run it.

    Per person it keeps `n` (messages stepped, also the status `n<N>` unless a message sets
    another) and `seen` (their external ids in order: each applied exactly once). Text →
    "echo: TEXT"; "poll"/"many" → a poll of three days (one or several choices); a vote or
    reaction → "choice: CHOICE on EVENT"; an edit → "edit: TEXT of EVENT"; a redaction →
    "redacted EVENT"; numbered answers (an email form) → "answers: …", status "confirming";
    "yes" → a welcome with a calendar invite, status "confirmed"; the invite's answer →
    `attendance`, status "accepted"/"declined"; "register" → status "registered" (for
    announcements); "boom" raises (a flow bug); "share" emits an event to the gathering run,
    which counts `events` and lists its `peers`; "later" sets a timer an hour on, whose tick
    answers "tick"; "add 1 2" asks for the job `total` ("break" for `broken`), status
    "waiting", and its result is kept in `results`, status "done". Anything else (an
    automatic reply) is ignored.
    """

    name: ClassVar[str] = "registration"
    reads: ClassVar[tuple[str, ...]] = ("registration",)
    state_model: ClassVar[type[EchoRun]] = EchoRun
    shared_model: ClassVar[type[EchoShared]] = EchoShared
    jobs: ClassVar[Mapping[str, JobFunction]] = {"total": total, "broken": broken}

    def wants(self, message: InboundMessage, status: str) -> bool:
        return True

    def step(self, ctx: StepContext[EchoRun, EchoShared]) -> Outcome:
        m = ctx.message
        if ctx.is_gathering_run:
            shared = ctx.shared
            shared.events += 1
            shared.peers = sorted(int(p) for p in ctx.peers.get("registration", {}))
            return Outcome(shared=shared)
        if m.text == "boom":
            raise RuntimeError("flow bug")
        state = ctx.state
        state.n += 1
        state.seen = [*state.seen, m.external_id]
        outcome = Outcome(state=state, status=f"n{state.n}")
        words = m.text.split()
        if m.kind == InboundKind.TICK:
            outcome.send.append(self._say(ctx, "tick"))
        elif m.kind == InboundKind.COMMAND and m.text == JOB_DONE:
            state.results = [*state.results, dict(m.payload)]
            outcome.status = "done"
        elif m.kind == InboundKind.TEXT and words[:1] in (["add"], ["break"]):
            job = "broken" if words[0] == "break" else "total"
            outcome.jobs.append(RunJob(job, {"numbers": words[1:]}))
            outcome.status = "waiting"
        elif m.kind == InboundKind.CALENDAR_REPLY and m.calendar is not None:
            state.attendance = m.calendar.partstat.lower()
            outcome.status = "accepted" if m.calendar.partstat == "ACCEPTED" else "declined"
        elif m.kind == InboundKind.CHOICE:
            outcome.send.append(self._say(ctx, f"choice: {m.choice} on {m.in_reply_to}"))
        elif m.kind == InboundKind.EDIT:
            outcome.send.append(self._say(ctx, f"edit: {m.text} of {m.replaces}"))
        elif m.kind == InboundKind.REDACTION:
            outcome.send.append(self._say(ctx, f"redacted {m.replaces}"))
        elif m.kind != InboundKind.TEXT:
            return Outcome(state=state, ignored=True)
        elif m.text in ("poll", "many"):
            poll = self._say(ctx, "Which day?")
            outcome.send.append(
                replace(poll, kind=OutKind.POLL, multiple=m.text == "many", options=DAYS)
            )
        elif m.answers:
            state.answers = {str(k): v for k, v in m.answers.items()}
            outcome.status = "confirming"
            outcome.send.append(self._say(ctx, f"answers: {state.answers}; yes?"))
        elif m.text.strip().lower().startswith("yes"):
            outcome.status = "confirmed"
            outcome.send.append(replace(self._say(ctx, "You are in."), invite=_invite()))
        else:
            outcome.send.append(self._say(ctx, f"echo: {m.text}"))
            if m.text == "register":
                outcome.status = "registered"
            elif m.text == "share":
                outcome.emit.append(Emit("registration", GATHERING_SUBJECT, "shared"))
            elif m.text == "later":
                outcome.timers.append(SetTimer("remind", ctx.now + timedelta(hours=1)))
        return outcome

    @staticmethod
    def _say(ctx: StepContext[EchoRun, EchoShared], words: str) -> Outgoing:
        return Outgoing(ctx.person.id, SAY, {"words": words})


#: The test flow's one template: its context's `words`, verbatim.
SAY = "test/say"
DAYS = ("Fri", "Sat", "Sun")


def _invite() -> Invite:
    return Invite(
        uid=INVITE_UID,
        sequence=0,
        method="REQUEST",
        summary="Camp 2027",
        start=datetime(2027, 7, 1, 16, tzinfo=UTC),
        end=datetime(2027, 7, 5, 12, tzinfo=UTC),
        tzid="Europe/Lisbon",
        location="Quinta",
    )


def write_templates(root: Path) -> Path:
    """The repository's templates plus the test flow's `test/say` (in English and German),
    under `root`; written again harmlessly, so a restarted gateway can point at them twice."""
    real = Path(__file__).resolve().parents[2] / "templates"
    shutil.copytree(real, root, dirs_exist_ok=True)
    for lang, words in (("en", "{{ words }}"), ("de", "DE {{ words }}")):
        (root / lang / "test").mkdir(parents=True, exist_ok=True)
        (root / lang / "test" / "say.txt.j2").write_text(
            '{% set subject = "Camp 2027" %}' + words + "\n"
        )
    return root


def renderer(tmp_path: Path) -> Renderer:
    """The one test renderer: `write_templates` under `tmp_path/templates`."""
    return Renderer(write_templates(tmp_path / "templates"))


@dataclass
class Recorder:
    """A transport that records what it is asked to send and can be told to fail."""

    channel: Channel = Channel.EMAIL
    sent: list[OutboxItem] = field(default_factory=list)
    fail_transient: int = 0
    fail_permanent: bool = False
    retry_after: float | None = None

    async def send(self, item: OutboxItem) -> str:
        if self.fail_permanent:
            raise PermanentError("550 no such user")
        if self.fail_transient > 0:
            self.fail_transient -= 1
            raise TransientError("421 try later", retry_after=self.retry_after)
        self.sent.append(item)
        return f"<{item.idempotency_key}@test>"


class Clock:
    """A settable clock for engine, outbox and timers."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2027, 1, 20, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def as_reply(engine: Engine, message: InboundMessage) -> InboundMessage:
    """`message` as a mail client's Reply sends it: to our Reply-To address, whose signed
    token names the sender's latest conversation (the email channel turns it into `target`).
    Only such a reply, or one naming our message in In-Reply-To, may change a registration."""
    assert message.sender is not None
    async with engine.store.read() as tx:
        row = await tx.one(
            "SELECT o.person_id, o.gathering, o.flow FROM outbox o"
            " JOIN identities i ON i.person_id = o.person_id"
            " WHERE i.kind = 'email' AND i.address = ? AND o.gathering IS NOT NULL"
            " ORDER BY o.id DESC LIMIT 1",
            (message.sender.address,),
        )
    if row is None:
        return message
    return replace(message, target=Target(row[1], row[2], PersonId(row[0])))


def channel_of(identity: Identity) -> Channel:
    return Channel.EMAIL if identity.kind == IdentityKind.EMAIL else Channel.MATRIX


def inbound(
    sender: Identity,
    text: str = "",
    *,
    kind: InboundKind = InboundKind.TEXT,
    at: datetime | None = None,
    external_id: str | None = None,
    **fields: Any,
) -> InboundMessage:
    """A message from `sender` on the channel of its identity; a fresh external id by default."""
    return InboundMessage(
        channel=channel_of(sender),
        external_id=external_id or f"msg-{next(_ids)}",
        kind=kind,
        received_at=at or datetime(2027, 1, 1, tzinfo=UTC),
        sender=sender,
        text=text,
        **fields,
    )


def calendar_reply(sender: Identity, uid: str, partstat: str, sequence: int) -> InboundMessage:
    return inbound(
        sender,
        kind=InboundKind.CALENDAR_REPLY,
        calendar=CalendarAnswer(
            uid=uid, partstat=partstat, sequence=sequence, attendee=sender.address
        ),
    )


@dataclass
class Harness:
    """The real engine, store, outbox and timers around fake transports and a hand clock."""

    store: Store
    engine: Engine
    clock: Clock
    transports: dict[Channel, Recorder]
    worker: OutboxWorker
    timers: TimerLoop
    delivered: int = field(default=0)

    @classmethod
    async def open(
        cls,
        tmp_path: Path,
        flows: Mapping[str, Flow],
        gatherings: Mapping[str, GatheringConfig],
        clock: Clock | None = None,
        organisers: Sequence[Organiser] = (),
    ) -> Harness:
        clock = clock or Clock(datetime(2027, 3, 1, 9, 0, tzinfo=UTC))
        config = LoadedConfig(
            path=tmp_path / "gateway.toml",
            service=ServiceConfig(
                store=StoreSettings(path=tmp_path / "gateway.sqlite3", durability="normal"),
                organisers=list(organisers),
            ),
            gatherings=dict(gatherings),
            sources={},
        )
        # The service's own wiring (`build_engine`, `Service`: its outbox worker and timers,
        # on the engine's clock), with recorders for channels; it is driven by hand, not run.
        engine = await build_engine(config, flows=flows, clock=clock)
        engine.desk = organisers_router(engine, lambda: config).handle
        transports = {c: Recorder(c) for c in (Channel.EMAIL, Channel.MATRIX)}
        service = Service(config, engine, lambda *_: Channels(senders=dict(transports)))
        return cls(engine.store, engine, clock, transports, service.outbox, service.timers)

    async def close(self) -> None:
        await self.store.close()

    async def handle(self, message: InboundMessage) -> Handled:
        return await self.engine.handle(message)

    async def say(self, sender: Identity, text: str = "", **fields: Any) -> list[OutboxItem]:
        """Handle one message from `sender` and return what the gateway sent as a result.

        By email it is a reply to the last message sent to the sender, as a mail client's
        Reply is (pass `in_reply_to=None` for a fresh mail, e.g. a forged one)."""
        if sender.kind == IdentityKind.EMAIL and "in_reply_to" not in fields:
            mine = [i for i in self.transports[Channel.EMAIL].sent if i.address == sender.address]
            fields["in_reply_to"] = f"<{mine[-1].idempotency_key}@test>" if mine else None
        await self.handle(inbound(sender, text, at=self.clock.now, **fields))
        return await self.deliver()

    async def deliver(self) -> list[OutboxItem]:
        """Run the outbox until it is empty; return the items sent since the last call."""
        while await self.worker.run_once():
            pass
        everything = sorted(
            (i for t in self.transports.values() for i in t.sent), key=lambda i: i.id
        )
        fresh = everything[self.delivered :]
        self.delivered = len(everything)
        return fresh

    async def fire_timers(self) -> list[OutboxItem]:
        await self.timers.fire_due()
        return await self.deliver()

    async def run(self, person: int, flow: str = "registration") -> tuple[str, dict[str, Any]]:
        """(status, state) of a flow run; person 0 is the gathering-level run."""
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT status, state FROM flow_runs WHERE flow = ? AND person_id = ?",
                (flow, person),
            )
        return (row["status"], json.loads(row["state"])) if row else ("", {})

    async def person_of(self, identity: Identity) -> int:
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT person_id FROM identities WHERE kind = ? AND address = ?",
                (identity.kind.value, identity.address),
            )
        assert row is not None, f"{identity} is not a person"
        return int(row[0])

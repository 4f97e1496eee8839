"""The engine: everything one inbound message causes, in one SQLite transaction.

inbox dedupe → find the person → route to a flow run → the flow's pure step → new state,
outbox rows, timers, audit. No network I/O happens here; transports only ever see committed
outbox rows. A crash before COMMIT leaves no trace, so the transport redelivers the message
and the same step runs again; a crash after COMMIT finds the inbox row and does nothing.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.base import (
    CONFIG_CHANGED,
    Flow,
    FlowState,
    Outcome,
    PersonInfo,
    Scheduling,
    StepContext,
)
from flows.config import GatheringConfig
from gateway.core.committer import GroupCommitter
from gateway.core.intake import clean_message
from gateway.core.outbound import Enqueuer, common_context
from gateway.core.people import (
    CHANNEL_OF_KIND,
    PersonRecord,
    create_person,
    load_person,
    new_person_record,
    person_from_row,
    record_bounce,
    reset_bounces,
    update_person,
)
from gateway.core.records import (
    AUDIT_INSERT,
    FIRST_READ,
    UPSERT_RUN,
    add_jobs,
    audit_row,
    claim_timer,
    finish_job,
    load_peers,
    load_shared_of,
    load_stored_state,
    record_inbox,
    save_cursor,
    summarise,
    upsert_params,
    write_timers,
)
from gateway.core.render import Renderer
from gateway.core.routing import RouteDecision, RunCache, replied_questions, route
from gateway.core.states import BadState, StateCodec
from gateway.core.unsolicited import mark_proven
from gateway.model import (
    GATHERING_SUBJECT,
    Attachment,
    Channel,
    Identity,
    InboundKind,
    InboundMessage,
    Outgoing,
    PersonId,
    Reply,
    SetTimer,
    Target,
)
from gateway.store.db import Inserted, Store, Tx, now_iso

log = logging.getLogger(__name__)

__all__ = ["Engine", "Handled", "save_cursor"]

#: More messages than this from one person within LOOP_WINDOW are not answered: a person
#: answering a dozen questions sends about a dozen; an auto-replier answering each of our
#: messages sent a thousand in two minutes. The organisers are told when it starts.
LOOP_LIMIT = 40
LOOP_WINDOW = timedelta(minutes=10)
LOOP_CHANNELS = frozenset({Channel.EMAIL, Channel.MATRIX})

#: Flow-to-flow events may cascade (a cancellation frees a seat, which offers it to the next
#: person…); a bound stops a buggy pair of flows from looping forever inside one transaction.
MAX_EVENTS_PER_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of one inbound message."""

    duplicate: bool
    target: Target | None = None
    outcome: str = "applied"
    outbox: tuple[int, ...] = ()
    #: The text of the steps' replies to the message's caller (`Outcome.reply`), for a
    #: caller that reads them here (the `gateway` command); rooms and addresses got them
    #: through the outbox too.
    replies: tuple[str, ...] = ()
    #: Whether a step's reply said the command was refused (`Reply.refused`).
    refused: bool = False


@dataclass(frozen=True, slots=True)
class _Handling:
    """A message's `Handled` before its transaction committed: its outbox rows' ids are
    known only then (they are written with the COMMIT, in one hop)."""

    handled: Handled
    outbox: list[Inserted] = field(default_factory=list)

    def committed(self) -> Handled:
        ids = tuple(row.id for row in self.outbox if row.id is not None)
        return replace(self.handled, outbox=ids) if ids else self.handled


_DUPLICATE = _Handling(Handled(duplicate=True))


@dataclass
class _Work:
    """What one inbound message's processing gathers and caches inside its transaction."""

    #: Outbox rows queued; their ids are known once the transaction committed.
    outbox: list[Inserted] = field(default_factory=list)
    sender: PersonId | None = None
    runs: RunCache = field(default_factory=RunCache)
    #: Audit rows, written in one statement at the end of the message.
    audit: list[tuple[object, ...]] = field(default_factory=list)
    #: Person records read in this transaction: each hop to the database thread counts.
    people: dict[PersonId, PersonRecord] = field(default_factory=dict)
    #: Messages from the sender in the last LOOP_WINDOW (the loop guard).
    recent: int = 0
    #: Rendered replies to the message's caller.
    replies: list[str] = field(default_factory=list)
    refused: bool = False

    async def person(
        self, tx: Tx, person: PersonId, organisers: frozenset[Identity]
    ) -> PersonRecord:
        if person not in self.people:
            self.people[person] = await load_person(tx, person, organisers)
        return self.people[person]


class Engine:
    """Applies inbound messages to flow runs. One instance per service."""

    def __init__(
        self,
        store: Store,
        flows: Mapping[str, Flow],
        gatherings: Mapping[str, GatheringConfig],
        *,
        renderer: Renderer | None = None,
        organisers: Iterable[Identity] = (),
        token_maker: Callable[[PersonId, str], str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        default_flow: str = "registration",
        unproven_daily_limit: int | None = None,
    ) -> None:
        self.store = store
        self.flows = dict(flows)
        self.states = StateCodec(self.flows)
        self.gatherings = dict(gatherings)
        # Who, not by which name: a sender's display name is whatever their client says.
        self.organisers = frozenset(Identity(i.kind, i.address) for i in organisers)
        self.clock = clock
        self.default_flow = default_flow
        self.enqueuer = Enqueuer(
            renderer or Renderer(), self.organisers, token_maker, unproven_daily_limit
        )
        self.committer: GroupCommitter[_Handling] = GroupCommitter(
            store, self._process, save_cursor, on_failure=self._dead_letter
        )
        #: The organisers' command router (gateway/ops/router.py), set by the app: COMMANDs
        #: with a caller and no target go there, outside the engine's transactions (it runs
        #: reports and sends COMMANDs back here). Without one they are recorded, not run.
        self.desk: Callable[[InboundMessage], Awaitable[Handled]] | None = None

    def reload(self, gatherings: Mapping[str, GatheringConfig]) -> None:
        """Swap in edited gathering files (and re-read templates); answers are keyed by
        question id, so none is lost. Call `config_changed` after it."""
        self.gatherings = dict(gatherings)
        self.enqueuer.renderer.clear()

    async def config_changed(self, before: Mapping[str, GatheringConfig]) -> list[Handled]:
        """Tell the gathering-level run of each config-aware flow of every gathering whose
        file changed, so it can act on the new config at once."""
        now = self.clock()
        messages = [
            InboundMessage(
                channel=Channel.INTERNAL,
                external_id=f"{CONFIG_CHANGED}/{slug}/{name}/{now.isoformat()}",
                kind=InboundKind.COMMAND,
                received_at=now,
                text=CONFIG_CHANGED,
                target=Target(slug, name, GATHERING_SUBJECT),
            )
            for slug, gathering in self.gatherings.items()
            if slug in before and before[slug] != gathering
            for name, flow in self.flows.items()
            if getattr(flow, "config_aware", False)
        ]
        return await self.handle_batch(messages) if messages else []

    async def schedule(self) -> int:
        """Make each gathering's timers say what its flows' configs imply (`Scheduling`).

        Called on start and after every reload; idempotent. Returns how many timers it set.
        """
        now = self.clock()
        planned = 0
        async with self.store.transaction() as tx:
            for slug, gathering in self.gatherings.items():
                for name, flow in self.flows.items():
                    if not isinstance(flow, Scheduling):
                        continue
                    target = Target(slug, name, GATHERING_SUBJECT)
                    state = self.states.load(target, await load_stored_state(tx, target))
                    timers = flow.schedule(gathering, state, now)
                    wanted = [SetTimer(n, due) for n, due in timers.items() if due is not None]
                    dropped = [n for n, due in timers.items() if due is None]
                    await write_timers(tx, target, dropped, wanted)
                    planned += len(wanted)
        return planned

    async def handle(
        self, message: InboundMessage, *, cursor: tuple[str, str] | None = None
    ) -> Handled:
        """Apply one message (and advance a transport cursor) atomically."""
        return (await self.handle_batch([message], cursor=cursor))[0]

    async def handle_batch(
        self, messages: Sequence[InboundMessage], *, cursor: tuple[str, str] | None = None
    ) -> list[Handled]:
        """Apply several messages in one transaction, e.g. one Matrix sync response.

        The cursor covering them is saved in the same transaction, so after a crash the
        transport resumes exactly where the committed inbox rows end. Concurrent callers
        share transactions (gateway/core/committer.py); each returns once its messages committed.
        Organisers' commands go to the desk first (one by one, each recorded with its answer).
        """
        if not any(_for_desk(m) for m in messages):
            return [result.committed() for result in await self.committer.submit(messages, cursor)]
        results: dict[int, Handled] = {}
        for i, message in enumerate(messages):
            if _for_desk(message):
                results[i] = await self._to_desk(message)
        rest = [(i, m) for i, m in enumerate(messages) if i not in results]
        if rest or cursor is not None:
            applied = await self.committer.submit([m for _, m in rest], cursor)
            results.update(zip((i for i, _ in rest), (a.committed() for a in applied), strict=True))
        return [results[i] for i in range(len(messages))]

    async def _to_desk(self, message: InboundMessage) -> Handled:
        message = clean_message(message)  # an announcement's text reaches everyone
        if self.desk is None:
            return await self.record_command(message, "refused", "no organisers' router here")
        try:
            return await self.desk(message)
        except Exception as exc:
            # A bug a command triggers must not stop the channel, nor come back with every
            # redelivery: recorded as failed, the organiser told, like `_dead_letter`.
            log.exception("command %s failed", message.external_id)
            detail = f"{type(exc).__name__}: {exc}"[:500]
            return await self.record_command(
                message, "failed", detail, f"Sorry, that command failed ({detail})."
            )

    async def seen(self, message: InboundMessage) -> bool:
        """Whether the inbox already holds this message (it was applied or recorded)."""
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT 1 FROM inbox WHERE channel = ? AND external_id = ?",
                (message.channel.value, message.external_id),
            )
        return row is not None

    async def replied_to_us(self, message: InboundMessage) -> bool:
        """Whether the message answers one of our messages to its sender's address: only
        someone who reads that address's mail can do that."""
        if message.in_reply_to is None or message.sender is None:
            return False
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT 1 FROM outbox WHERE channel = ? AND external_id = ? AND address = ?",
                (message.channel.value, message.in_reply_to, message.sender.address),
            )
        return row is not None

    async def record_command(
        self,
        message: InboundMessage,
        outcome: str,
        detail: str,
        text: str = "",
        attachments: Sequence[Attachment] = (),
    ) -> Handled:
        """Record an organiser's command in the inbox and queue its answer to the caller, in
        one transaction (a redelivered command finds the row and is not answered again)."""
        now = self.clock()
        async with self.store.transaction() as tx:
            if await tx.one(
                "SELECT 1 FROM inbox WHERE channel = ? AND external_id = ?",
                (message.channel.value, message.external_id),
            ):
                return Handled(duplicate=True)
            caller = message.caller
            rows: list[Inserted] = []
            if (text or attachments) and caller and caller.channel in LOOP_CHANNELS:
                answer = Outgoing(
                    to=GATHERING_SUBJECT,
                    template="core/command_answer",
                    context={"text": text, "command": message.text.strip().splitlines()[0][:80]},
                    channel=caller.channel,
                    address=caller.address,
                    attachments=tuple(attachments),
                )
                rows = await self.enqueuer.enqueue(
                    tx, [answer], target=None, gathering=None, cause=message, index_base=0, now=now
                )
            await record_inbox(tx, message, None, now, None, outcome, detail)
        ids = tuple(row.id for row in rows if row.id is not None)
        return Handled(False, None, outcome, ids, (text,) if text else ())

    async def _process(self, tx: Tx, message: InboundMessage) -> _Handling:
        message = clean_message(message)
        now = self.clock()
        sender = message.sender
        explicit = message.target.person if message.target and sender is None else None
        # Dedupe, the sender, their identities and all their runs in one round trip: the
        # hops to the database thread, not SQLite, are most of the cost of a message.
        first = await tx.one(
            FIRST_READ,
            (
                message.channel.value,
                message.external_id,
                now_iso(now - LOOP_WINDOW),
                sender.kind.value if sender else None,
                sender.address if sender else None,
                explicit,
            ),
        )
        assert first is not None
        if first["seen"]:
            return _DUPLICATE
        work = _Work()
        if message.channel == Channel.TIMER and not await claim_timer(tx, message):
            return _DUPLICATE
        if "job_id" in message.meta:
            # The result commits with the job's "done": a crash before runs the job again.
            await finish_job(tx, int(message.meta["job_id"]), now)
        known = PersonId(first["person_id"]) if first["person_id"] is not None else None
        if known is not None:
            work.people[known] = person_from_row(first, self.organisers)
        work.runs.prime(known, json.loads(first["runs"] or "[]"))
        person = work.sender = await self._sender(tx, message, known, work)
        if known is None and person is not None and message.sender is not None:
            work.runs.prime(person, [])  # created just now: no runs to read
        work.recent = int(first["recent"] or 0)
        outcome_label, target, detail = await self._dispatch(tx, message, person, now, work)
        if person and message.kind not in (InboundKind.TICK, InboundKind.COMMAND):
            flow = self.flows.get(target.flow) if target else None
            # A flow that may hold anonymous answers keeps their text out of the log.
            line = summarise(message, with_text=getattr(flow, "audit_text", True))
            work.audit.append(audit_row(person, "in", message.channel, target, line, now))
        # The audit and inbox rows (like the step's other writes) are deferred: they reach the
        # database thread with the next statement, here the COMMIT, in one hop.
        tx.defer_many(AUDIT_INSERT, work.audit)
        await record_inbox(tx, message, person, now, target, outcome_label, detail)
        handled = Handled(
            False, target, outcome_label, replies=tuple(work.replies), refused=work.refused
        )
        return _Handling(handled, work.outbox)

    async def _sender(
        self, tx: Tx, message: InboundMessage, person: PersonId | None, work: _Work
    ) -> PersonId | None:
        """The person who sent the message; strangers become people when they write to us."""
        if message.sender is None:
            return message.target.person if message.target else None
        if person is None and message.kind in (InboundKind.TEXT, InboundKind.CHOICE):
            language = next(iter(self.gatherings.values())).language if self.gatherings else "en"
            person = await create_person(tx, message.sender, language=language)
            work.people[person] = new_person_record(
                person, message.sender, language, self.organisers
            )
        return person

    async def _dispatch(
        self, tx: Tx, message: InboundMessage, person: PersonId | None, now: datetime, work: _Work
    ) -> tuple[str, Target | None, str]:
        if message.kind == InboundKind.AUTO_REPLY:
            return "auto_reply", None, "automatic reply: recorded, not answered"
        if message.kind == InboundKind.BOUNCE:
            return await self._bounce(tx, message, now, work)
        if message.kind == InboundKind.REJECTED:
            return await self._rejected(tx, message, now, work)
        if person is not None and message.channel in LOOP_CHANNELS and work.recent >= LOOP_LIMIT:
            return await self._loop(tx, message, person, now, work)
        decision = await route(
            tx, message, person, self.gatherings, self.flows, self.default_flow, work.runs
        )
        if decision.target is None:
            recipient = decision.notify or person
            third_party = decision.notify is not None and decision.notify != person
            if third_party and await _notified_lately(tx, decision, now):
                # Notices about strangers' mail go to someone who did not write: one a day.
                return decision.label, None, decision.detail + " (notice already sent today)"
            if recipient and decision.reply_template:
                record = await work.person(tx, recipient, self.organisers)
                outcome = Outcome(
                    send=[_reply(record.info, decision.reply_template, decision.context)]
                )
                await self._apply_sends(tx, outcome, None, record.info, message, now, work)
            return decision.label, None, decision.detail
        # A token only verifies when it is the sender's own (routing holds anyone else's).
        proven = message.channel != Channel.EMAIL or message.target is not None
        asked: tuple[str, ...] = ()
        if message.in_reply_to and person is not None:
            replied = await replied_questions(tx, message.in_reply_to, person)
            proven = proven or replied is not None
            asked = replied or ()
        message = replace(message, questions=asked, proven=proven)
        if proven and message.channel == Channel.EMAIL and message.sender is not None:
            await reset_bounces(tx, message.sender.address)
            await mark_proven(tx, Channel.EMAIL, message.sender.address, now)
        await self._run_step(tx, decision.target, message, now, work)
        return "applied", decision.target, decision.detail

    async def _run_step(
        self, tx: Tx, target: Target, message: InboundMessage, now: datetime, work: _Work
    ) -> None:
        """Run one step and every flow-to-flow event it causes, breadth first."""
        queue: deque[tuple[Target, InboundMessage]] = deque([(target, message)])
        handled = 0
        while queue:
            handled += 1
            if handled > MAX_EVENTS_PER_MESSAGE:
                raise RuntimeError(
                    f"more than {MAX_EVENTS_PER_MESSAGE} flow events for one message"
                )
            current, msg = queue.popleft()
            outcome, info = await self._step(tx, current, msg, now, work)
            await self._persist(tx, current, outcome, info, msg, now, work)
            for i, event in enumerate(outcome.emit):
                queue.append(
                    (
                        Target(current.gathering, event.flow, event.person),
                        InboundMessage(
                            channel=Channel.INTERNAL,
                            external_id=f"{msg.external_id}/{handled}.{i}",
                            kind=InboundKind.COMMAND,
                            received_at=now,
                            text=event.name,
                            payload=dict(event.payload),
                            target=Target(current.gathering, event.flow, event.person),
                            meta={"from_flow": current.flow},
                        ),
                    )
                )

    async def _step(
        self, tx: Tx, target: Target, message: InboundMessage, now: datetime, work: _Work
    ) -> tuple[Outcome, PersonInfo]:
        gathering = self.gatherings[target.gathering]
        flow = self.flows[target.flow]
        stored = await work.runs.states(tx, target)
        shared_target = Target(target.gathering, target.flow, GATHERING_SUBJECT)
        if target.person == GATHERING_SUBJECT:
            info = PersonInfo(GATHERING_SUBJECT, gathering.name, gathering.language, None)
        else:
            info = (await work.person(tx, target.person, self.organisers)).info
        peers, shared_of = {}, {}
        if target.person == GATHERING_SUBJECT:
            peers = await load_peers(tx, target, flow)
            shared_of = await load_shared_of(tx, target, flow)
        ctx = StepContext(
            message=message,
            now=now,
            gathering=gathering,
            person=info,
            # Two loads, two copies: the step may change both, and a gathering step's `state`
            # and `shared` are not the same object.
            state=self.states.load(target, stored.get(target.person)),
            # Validated only if the step reads it (it grows with the gathering).
            load_shared=lambda: self.states.load(shared_target, stored.get(GATHERING_SUBJECT)),
            peers=peers,
            shared_of=shared_of,
        )
        try:
            return flow.step(ctx), info
        except BadState:
            # The gathering's state, read by the step, does not fit its model: not the flow's
            # fault, and like the run's own state it fails the message whole (dead letter).
            raise
        except Exception:
            if message.meta.get("from_flow"):
                # Inside a flow-to-flow cascade: earlier steps of it must not stay applied
                # alone. The message is rolled back whole and set aside (`_dead_letter`).
                raise
            # A flow bug must not lose the message nor stop the service: the person hears
            # that something went wrong, the organisers get the details, the state is kept.
            log.exception("flow %s failed on %s", target.flow, message.external_id)
            error = Outcome(ignored=True)
            if info.id != GATHERING_SUBJECT and message.sender is not None:
                error.send.append(_reply(info, "core/error", {}))
            error.send.extend(
                self.enqueuer.organiser_alerts(
                    "core/flow_failed",
                    {
                        "flow": target.flow,
                        "gathering": gathering.slug,
                        "message": message.external_id,
                    },
                )
            )
            return error, info

    async def _persist(
        self,
        tx: Tx,
        target: Target,
        outcome: Outcome,
        info: PersonInfo,
        message: InboundMessage,
        now: datetime,
        work: _Work,
    ) -> None:
        stamp = now_iso(now)
        upserts: list[tuple[Target, str | None, str | None]] = []
        if outcome.state is not None or outcome.status is not None:
            encoded = self._encode(target, outcome.state)
            upserts.append((target, encoded, outcome.status))
        if outcome.shared is not None:
            shared_target = Target(target.gathering, target.flow, GATHERING_SUBJECT)
            encoded = self._encode(shared_target, outcome.shared)
            if shared_target == target and upserts:
                upserts[0] = (target, encoded, outcome.status)
            else:
                upserts.append((shared_target, encoded, None))
        if upserts:
            tx.defer_many(UPSERT_RUN, [upsert_params(t, st, su, stamp) for t, st, su in upserts])
            for t, st, su in upserts:
                # The state as the row stores it: encoded once, for the write and the cache.
                work.runs.remember(t, st, su)
        if target.person != GATHERING_SUBJECT and (
            outcome.link or outcome.preferred_channel or outcome.language
        ):
            refused = await update_person(
                tx, target.person, outcome.link, outcome.preferred_channel, outcome.language
            )
            work.people.pop(target.person, None)
            for identity in outcome.link or ():
                # A link is made only after its code came back: the address proved itself.
                if identity not in refused:
                    await mark_proven(tx, CHANNEL_OF_KIND[identity.kind], identity.address, now)
            if refused:
                # The step announced a link the engine could not make (the address is someone
                # else's): say that instead. Merging two people is the organisers' decision.
                addresses = [i.address for i in refused]
                outcome.send = [_reply(info, "core/link_refused", {"addresses": addresses})]
        await write_timers(tx, target, outcome.cancel_timers, outcome.timers)
        if outcome.jobs:
            await add_jobs(tx, target, outcome.jobs, now, message.caller)
        if outcome.reply is not None:
            outcome.send = [*outcome.send, *self._answer(outcome.reply, target, message, work)]
        await self._apply_sends(tx, outcome, target, info, message, now, work)

    def _answer(
        self, reply: Reply, target: Target, message: InboundMessage, work: _Work
    ) -> list[Outgoing]:
        """A step's reply to the COMMAND's caller: its text for the result, and a message to
        the caller's room or address (none for the terminal, nor without a caller)."""
        caller = message.caller
        if caller is None:
            log.debug("reply %s to %s has no caller", reply.template, message.external_id)
            return []
        gathering = self.gatherings[target.gathering]
        rendered = self.enqueuer.renderer.render(
            reply.template,
            language=gathering.language,
            channel=caller.channel.value,
            context={**common_context(gathering, None, {}), **reply.context},
        )
        work.replies.append(rendered.text)
        work.refused = work.refused or reply.refused
        if caller.channel not in LOOP_CHANNELS:
            return []
        return [
            Outgoing(
                to=GATHERING_SUBJECT,
                template=reply.template,
                context=dict(reply.context),
                channel=caller.channel,
                address=caller.address,
            )
        ]

    def _encode(self, target: Target, state: FlowState | None) -> str | None:
        return self.states.dump(target, state) if state is not None else None

    async def _apply_sends(
        self,
        tx: Tx,
        outcome: Outcome,
        target: Target | None,
        info: PersonInfo,
        message: InboundMessage,
        now: datetime,
        work: _Work,
    ) -> None:
        gathering = self.gatherings.get(target.gathering) if target else None
        ids = await self.enqueuer.enqueue(
            tx,
            outcome.send,
            target=target,
            gathering=gathering,
            cause=message,
            index_base=len(work.outbox),
            now=now,
            people=work.people,
            sender=work.sender,
            audit=work.audit,
        )
        work.outbox.extend(ids)

    async def _rejected(
        self, tx: Tx, message: InboundMessage, now: datetime, work: _Work
    ) -> tuple[str, Target | None, str]:
        """Unreadable input: tell the sender what was wrong, directly, and apply nothing."""
        if message.sender is not None:
            note = Outgoing(
                to=GATHERING_SUBJECT,
                template="core/rejected",
                context={"reason": message.text},
                channel=CHANNEL_OF_KIND[message.sender.kind],
                address=message.sender.address,
            )
            info = PersonInfo(GATHERING_SUBJECT, "", "en", None)
            await self._apply_sends(tx, Outcome(send=[note]), None, info, message, now, work)
        return "rejected", None, message.text[:500]

    async def _dead_letter(self, tx: Tx, message: InboundMessage, exc: Exception) -> _Handling:
        """A message the engine cannot process (a bug its content triggers): record it as
        failed, so a redelivery is a duplicate rather than the same crash again, and tell
        the organisers — in the transaction its batch-mates commit in."""
        log.error("message %s failed", message.external_id, exc_info=exc)
        now = self.clock()
        detail = f"{type(exc).__name__}: {exc}"[:500]
        await record_inbox(tx, message, None, now, None, "failed", detail)
        alerts = self.enqueuer.organiser_alerts(
            "core/message_failed",
            {"channel": message.channel.value, "message": message.external_id, "error": detail},
        )
        await self.enqueuer.enqueue(
            tx,
            alerts,
            target=None,
            gathering=None,
            cause=None,
            index_base=0,
            now=now,
            key_prefix=f"failed:{message.channel.value}:{message.external_id}",
        )
        return _Handling(Handled(False, None, "failed"))

    async def _loop(
        self, tx: Tx, message: InboundMessage, person: PersonId, now: datetime, work: _Work
    ) -> tuple[str, Target | None, str]:
        """Too many messages from one person too fast: an auto-replier or a bot answering our
        every message. Stop answering (every answer would bring another) and tell the
        organisers once; the person's messages are still recorded."""
        if work.recent == LOOP_LIMIT:
            record = await work.person(tx, person, self.organisers)
            alerts = self.enqueuer.organiser_alerts(
                "core/loop_suspected",
                {
                    "person": record.info.display_name or f"#{person}",
                    "address": message.sender.address if message.sender else "",
                    "count": work.recent,
                    "minutes": int(LOOP_WINDOW.total_seconds() // 60),
                },
            )
            await self._apply_sends(tx, Outcome(send=alerts), None, record.info, message, now, work)
        return "loop", None, f"{work.recent} messages within {LOOP_WINDOW}: not answered"

    async def _bounce(
        self, tx: Tx, message: InboundMessage, now: datetime, work: _Work
    ) -> tuple[str, Target | None, str]:
        """Count hard bounces; past the limit, tell the organisers the address is failing."""
        failed = [str(a) for a in message.payload.get("failed", [])]
        permanent = bool(message.payload.get("permanent", True))
        for address in failed:
            person = await record_bounce(
                tx,
                address,
                permanent=permanent,
                original=message.payload.get("original_message_id"),
            )
            if person is None:
                continue
            record = await work.person(tx, person, self.organisers)
            alerts = self.enqueuer.organiser_alerts(
                "core/address_failing",
                {
                    "address": address,
                    "person": record.info.display_name or f"#{person}",
                    "other_channel": ", ".join(c.value for c in record.addresses),
                },
            )
            await self._apply_sends(tx, Outcome(send=alerts), None, record.info, message, now, work)
        return "bounce", None, f"{'permanent' if permanent else 'transient'}: {', '.join(failed)}"

    async def enqueue_alert(self, template: str, context: Mapping[str, Any], key: str) -> list[int]:
        """Queue a message to every organiser (dead letters); `key` makes it idempotent."""
        async with self.store.transaction() as tx:
            return await self.enqueue_alert_in(tx, template, context, key)

    async def enqueue_alert_in(
        self, tx: Tx, template: str, context: Mapping[str, Any], key: str
    ) -> list[int]:
        """The same inside a transaction of the caller's: the alert commits with what it
        reports (a dead letter and its alert go in one transaction)."""
        rows = await self.enqueuer.enqueue(
            tx,
            self.enqueuer.organiser_alerts(template, context),
            target=None,
            gathering=None,
            cause=None,
            index_base=0,
            now=self.clock(),
            key_prefix=key,
        )
        await tx.flush()
        return [row.id for row in rows if row.id is not None]


def _for_desk(message: InboundMessage) -> bool:
    return (
        message.kind == InboundKind.COMMAND
        and message.caller is not None
        and message.target is None
    )


def _reply(info: PersonInfo, template: str, context: Mapping[str, Any]) -> Outgoing:
    return Outgoing(to=info.id, template=template, context=dict(context))


#: How often one person is told about mail others sent in their name ("did you send this?").
NOTICE_INTERVAL = timedelta(days=1)


async def _notified_lately(tx: Tx, decision: RouteDecision, now: datetime) -> bool:
    """Whether a message held for the same reason was already recorded (and its owner told)
    within NOTICE_INTERVAL: ten forged mails must not become ten notices."""
    row = await tx.one(
        "SELECT 1 FROM inbox WHERE outcome = ? AND detail LIKE ? AND processed_at >= ? LIMIT 1",
        (
            decision.label,
            decision.detail.split(" used by ")[0] + " used by %",
            now_iso(now - NOTICE_INTERVAL),
        ),
    )
    return row is not None

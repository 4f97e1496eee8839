"""Organisers' announcements: `!announce` → preview and confirm → one message per registered person.

A gathering-level run (person 0) of this flow keeps the announcement waiting for
confirmation in its state, so a restart between `!announce` and `!confirm` loses nothing,
and a mistyped announcement costs a `!cancel` instead of a message to everyone. Commands
arrive as COMMAND messages targeted at this run from the organisers' router, which says who
asked; the answers go back to where the command came from (`Outcome.reply`).
"""

from __future__ import annotations

from typing import ClassVar

from flows.base import FlowState, Moment, Outcome, StepContext, absent
from gateway.model import InboundKind, InboundMessage, Outgoing, Reply

#: Registration statuses that count as "registered people" for announcements.
RECIPIENT_STATUSES = frozenset({"registered"})
#: How many sent announcements the state remembers (who sent what, to how many).
KEPT = 20


class Pending(FlowState):
    """An announcement waiting for `confirm`."""

    text: str
    by: str
    at: Moment


class Sent(FlowState):
    by: str
    at: Moment
    count: int
    confirmed_by: str


class Announcements(FlowState):
    """The gathering's announcements: the one waiting, and the last ones sent."""

    pending: Pending | None = absent()
    sent: list[Sent] = absent(factory=list)


Context = StepContext[FlowState, Announcements]


class Organisers:
    name: ClassVar[str] = "organisers"
    reads: ClassVar[tuple[str, ...]] = ("registration",)
    #: Only the gathering's run has a state; people have no run of this flow.
    state_model: ClassVar[type[FlowState]] = FlowState
    shared_model: ClassVar[type[Announcements]] = Announcements

    def wants(self, message: InboundMessage, status: str) -> bool:
        return False  # only explicit commands reach this flow

    def step(self, ctx: Context) -> Outcome:
        message = ctx.message
        if not ctx.is_gathering_run or message.kind != InboundKind.COMMAND:
            return Outcome(ignored=True)
        state = ctx.shared
        recipients = sorted(
            person
            for person, run in ctx.peers.get("registration", {}).items()
            if run.status in RECIPIENT_STATUSES and run.state.get("announcements", True)
        )
        by = str(message.payload.get("by", ""))

        def reply(template: str, **context: object) -> Reply:
            return Reply(f"organisers/{template}", context)

        if message.text == "announce":
            text = str(message.payload.get("text", ""))
            state.pending = Pending(text=text, by=by, at=ctx.now)
            return Outcome(shared=state, reply=reply("confirm", text=text, count=len(recipients)))
        pending, state.pending = state.pending, None
        if pending is None:
            return Outcome(reply=reply("nothing_pending"))
        if message.text == "cancel":
            return Outcome(shared=state, reply=reply("cancelled"))
        if message.text != "confirm":
            return Outcome(ignored=True)
        sent = Sent(by=pending.by, at=ctx.now, count=len(recipients), confirmed_by=by)
        state.sent = [*state.sent, sent][-KEPT:]
        sends = [
            Outgoing(
                to=person,
                template="organisers/announcement",
                context={"text": pending.text},
                is_reply=False,
            )
            for person in recipients
        ]
        return Outcome(shared=state, send=sends, reply=reply("sent", count=len(recipients)))

"""Organisers' announcements: `!announce` → preview and confirm → one message per registered person.

A gathering-level run (person 0) of this flow keeps the announcement waiting for
confirmation in its state, so a restart between `!announce` and `!confirm` loses nothing,
and a mistyped announcement costs a `!cancel` instead of a message to everyone. Commands
arrive as COMMAND messages targeted at this run from the organisers' router, which says who
asked; the answers go back to where the command came from (`Outcome.reply`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from flows.base import Outcome, StepContext
from gateway.model import InboundKind, InboundMessage, Outgoing, Reply

#: Registration statuses that count as "registered people" for announcements.
RECIPIENT_STATUSES = frozenset({"registered"})


class Organisers:
    name: ClassVar[str] = "organisers"
    reads: ClassVar[tuple[str, ...]] = ("registration",)

    def wants(self, message: InboundMessage, status: str) -> bool:
        return False  # only explicit commands reach this flow

    def step(self, ctx: StepContext) -> Outcome:
        message = ctx.message
        if not ctx.is_gathering_run or message.kind != InboundKind.COMMAND:
            return Outcome(ignored=True)
        payload: Mapping[str, Any] = message.payload
        state = dict(ctx.state)
        recipients = sorted(
            person
            for person, run in ctx.peers.get("registration", {}).items()
            if run.status in RECIPIENT_STATUSES and run.state.get("announcements", True)
        )

        def reply(template: str, **context: Any) -> Reply:
            return Reply(f"organisers/{template}", context)

        if message.text == "announce":
            state["pending"] = {
                "text": str(payload.get("text", "")),
                "by": str(payload.get("by", "")),
                "at": ctx.now.isoformat(),
            }
            return Outcome(
                state=state,
                reply=reply("confirm", text=state["pending"]["text"], count=len(recipients)),
            )
        pending = state.pop("pending", None)
        if pending is None:
            return Outcome(reply=reply("nothing_pending"))
        if message.text == "cancel":
            return Outcome(state=state, reply=reply("cancelled"))
        if message.text != "confirm":
            return Outcome(ignored=True)
        sent = [
            *state.get("sent", []),
            {
                "by": pending["by"],
                "at": ctx.now.isoformat(),
                "count": len(recipients),
                "confirmed_by": str(payload.get("by", "")),
            },
        ]
        state["sent"] = sent[-20:]
        sends = [
            Outgoing(
                to=person,
                template="organisers/announcement",
                context={"text": pending["text"]},
                is_reply=False,
            )
            for person in recipients
        ]
        return Outcome(state=state, send=sends, reply=reply("sent", count=len(recipients)))

"""Linking a second address to a person: "link email maya@example.org" / "link matrix @maya:hs".

A 6-digit code goes to the address being linked (forced channel and address); typing it back
on the channel the person already uses proves they own both, and `Outcome.link` adds the
identity. Codes expire after an hour and after five wrong tries.

The code is the one impure value of this step (`secrets`): it must not be derivable from
anything the requester can see, or anyone could link someone else's address. Replaying the
step after a crash is still safe, because the code, the state holding it and the message
carrying it are committed together or not at all.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any, ClassVar, Literal

from flows.base import FlowState, Moment, Outcome, StepContext, absent
from gateway.model import Channel, Identity, InboundKind, InboundMessage, Outgoing

FLOW = "linking"
CODE_LIFETIME = timedelta(hours=1)
MAX_TRIES = 5
_LINK = re.compile(r"^\s*link\b\s*(\S*)\s*(\S*)\s*$", re.IGNORECASE)
_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MXID = re.compile(r"^@[^:\s]+:[^\s]+$")


class Address(FlowState):
    kind: Literal["email", "matrix"]
    address: str


class PendingLink(Address):
    """A code sent to `address`, waiting to be typed back."""

    code: str
    tries: int = 0
    expires: Moment


class LinkingRun(FlowState):
    """A person's linking: the code waiting, and the addresses linked so far."""

    pending: PendingLink | None = absent()
    linked: list[Address] = absent(factory=list)


Context = StepContext[LinkingRun, FlowState]


def is_link_command(text: str) -> bool:
    return _LINK.match(text) is not None


class Linking:
    name: ClassVar[str] = FLOW
    reads: ClassVar[tuple[str, ...]] = ()
    #: First words this flow owns wherever the person is in other flows (see gateway.core.routing).
    commands: ClassVar[tuple[str, ...]] = ("link",)
    state_model: ClassVar[type[LinkingRun]] = LinkingRun
    #: Nothing is shared between people's links.
    shared_model: ClassVar[type[FlowState]] = FlowState

    def wants(self, message: InboundMessage, status: str) -> bool:
        if message.kind != InboundKind.TEXT:
            return False
        if is_link_command(message.text):
            return True
        return status == "pending" and _CODE.search(message.text) is not None

    def step(self, ctx: Context) -> Outcome:
        message = ctx.message
        if ctx.is_gathering_run or message.kind != InboundKind.TEXT:
            return Outcome(ignored=True)
        me = ctx.person.id
        match = _LINK.match(message.text)
        if match:
            return _start(ctx, match.group(1).lower(), match.group(2))
        state = ctx.state  # the step's own copy
        pending = state.pending
        code = _CODE.search(message.text)
        if pending is None or code is None:
            return Outcome(send=[_say(me, "usage")])
        if ctx.now > pending.expires:
            state.pending = None
            return Outcome(state=state, status="expired", send=[_say(me, "expired")])
        if not secrets.compare_digest(code.group(1), pending.code):
            pending.tries += 1
            if pending.tries >= MAX_TRIES:
                state.pending = None
                return Outcome(state=state, status="failed", send=[_say(me, "too_many")])
            return Outcome(
                state=state,
                send=[_say(me, "wrong_code", left=MAX_TRIES - pending.tries)],
            )
        kind, address = pending.kind, pending.address
        identity = Identity.email(address) if kind == "email" else Identity.matrix(address)
        state.pending = None
        state.linked.append(Address(kind=kind, address=address))
        return Outcome(
            state=state,
            status="linked",
            link=[identity],
            send=[_say(me, "linked", kind=kind, address=address)],
        )


def _start(ctx: Context, kind: str, address: str) -> Outcome:
    me = ctx.person.id
    if kind == "email" and _EMAIL.match(address):
        address, channel = address.lower(), Channel.EMAIL
    elif kind == "matrix" and _MXID.match(address):
        channel = Channel.MATRIX
    else:
        return Outcome(send=[_say(me, "usage")])
    code = f"{secrets.randbelow(10**6):06d}"
    state = ctx.state
    state.pending = PendingLink(
        kind="email" if channel == Channel.EMAIL else "matrix",
        address=address,
        code=code,
        expires=ctx.now + CODE_LIFETIME,
    )
    via = (ctx.person.channel or Channel.MATRIX).value
    return Outcome(
        state=state,
        status="pending",
        send=[
            Outgoing(
                to=me,
                template=f"{FLOW}/code",
                is_reply=False,
                channel=channel,
                address=address,
                context={"code": code, "name": ctx.person.display_name, "via": via},
            ),
            _say(me, "code_sent", kind=kind, address=address),
        ],
    )


def _say(person: Any, template: str, **context: Any) -> Outgoing:
    return Outgoing(to=person, template=f"{FLOW}/{template}", context=context)

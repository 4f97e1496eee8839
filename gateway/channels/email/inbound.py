"""From a parsed inbound mail to the engine's `InboundMessage`, and the `mail inspect` report.

Both receiving paths (IMAP and the SMTP/LMTP listener) end here, so a reply is read the same
way whichever road it took, and `gateway mail inspect FILE.eml` shows exactly what the
service would do with a file.

Routing facts are decided in this order, strongest first:

1. a signed reply token (the plus address of our Reply-To) that verifies: `target` names the
   run; if the sender is not the token's person the engine holds the message and asks them;
2. In-Reply-To / References naming one of our Message-IDs (the engine matches it against
   `outbox.external_id`);
3. the sender's known address, then a new conversation (both decided by the engine).

Calendar replies carry no token (clients answer the ORGANIZER, which is our bare address), so
they are routed by invite UID and the ATTENDEE address instead.

Mail whose top Authentication-Results says DMARC (or every DKIM signature) failed is REJECTED
with no sender: its From may be forged, so it is neither applied nor answered (an answer to a
forged address is backscatter). It stays visible in the inbox log with the reason.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.channels.email.codec import ParsedEmail, parse_email
from gateway.channels.email.token import make_token, verify_token
from gateway.config import EmailSettings
from gateway.model import (
    CalendarAnswer,
    Caller,
    Channel,
    Identity,
    InboundKind,
    InboundMessage,
    PersonId,
    Target,
    is_command_line,
)

#: (gathering slug, flow name) by the short conversation slug a reply token carries.
Conversations = Mapping[str, tuple[str, str]]

_KIND = {
    "reply": InboundKind.TEXT,
    "new": InboundKind.TEXT,
    "calendar_reply": InboundKind.CALENDAR_REPLY,
    "auto_reply": InboundKind.AUTO_REPLY,
    "bounce": InboundKind.BOUNCE,
    "rejected": InboundKind.REJECTED,
}


def conversation_slug(gathering: str, flow: str) -> str:
    """The short, lower-case name of a (gathering, flow) conversation inside a reply token.

    Tokens live in the local part of an address (64 octets at most, lower-cased by some
    MTAs), so "gathering/flow" cannot go in as it is; a hash of it always fits. 50 bits make
    a collision between the few conversations of one service practically impossible.
    """
    digest = hashlib.sha256(f"{gathering}/{flow}".encode()).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:10]


def conversation_index(runs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Index every (gathering, flow) the service runs by its conversation slug."""
    return {conversation_slug(g, f): (g, f) for g, f in runs}


def token_maker(settings: EmailSettings) -> Callable[[PersonId, str], str]:
    """The engine's `token_maker`: (person, "gathering/flow") -> reply token."""
    secret = settings.token_secret.get().encode()

    def make(person: PersonId, conversation: str) -> str:
        gathering, _, flow = conversation.partition("/")
        return make_token(secret, int(person), conversation_slug(gathering, flow))

    return make


def own_addresses(settings: EmailSettings) -> frozenset[str]:
    return frozenset({settings.address.strip().lower()})


def is_own_address(address: str, settings: EmailSettings) -> bool:
    """Our address or any plus address of it (`local+anything@domain`): mail from there is
    our own coming back (a loop, or a forgery), never a person."""
    local, _, domain = settings.address.strip().lower().rpartition("@")
    their_local, _, their_domain = address.strip().lower().rpartition("@")
    base = their_local.split("+", 1)[0]
    return their_domain == domain and base == local


def external_id(parsed: ParsedEmail, raw: bytes) -> str:
    """The inbox dedupe key: the Message-ID, or a hash of the bytes when there is none."""
    if parsed.message_id:
        return parsed.message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Reading:
    """The InboundMessage plus why it was routed so (for logs and `mail inspect`)."""

    message: InboundMessage
    routing: str
    token: str


def read_email(
    parsed: ParsedEmail,
    settings: EmailSettings,
    *,
    raw: bytes,
    conversations: Conversations | None = None,
    received_at: datetime | None = None,
) -> Reading:
    """Map a parsed mail to an InboundMessage and explain the routing decision."""
    base: dict[str, Any] = {
        "channel": Channel.EMAIL,
        "external_id": external_id(parsed, raw),
        "received_at": received_at or datetime.now(UTC),
        "meta": _meta(parsed),
    }
    sender = Identity.email(parsed.from_address, parsed.from_name) if parsed.from_address else None
    token_state, target = _token_target(parsed, settings, conversations or {})
    if parsed.auth_failed:
        reason = f"sender authentication failed ({parsed.auth_detail or 'dmarc/dkim'})"
        message = InboundMessage(kind=InboundKind.REJECTED, text=reason, **base)
        return Reading(message, f"rejected, not answered: {reason}", token_state)
    if (
        parsed.from_address
        and is_own_address(parsed.from_address, settings)
        and parsed.kind != "bounce"
    ):
        reason = "mail from the gateway's own address (loop guard)"
        message = InboundMessage(kind=InboundKind.REJECTED, text=reason, **base)
        return Reading(message, f"rejected, not answered: {reason}", token_state)
    kind = _KIND[parsed.kind]
    if kind == InboundKind.BOUNCE:
        return _bounce(parsed, base, token_state)
    if kind == InboundKind.REJECTED:
        reason = parsed.reason or "unreadable message"
        message = InboundMessage(kind=kind, sender=sender, text=reason, **base)
        return Reading(message, f"rejected, sender told: {reason}", token_state)
    if kind == InboundKind.AUTO_REPLY:
        message = InboundMessage(kind=kind, sender=sender, text=parsed.auto_reason or "", **base)
        return Reading(
            message, f"automatic reply ({parsed.auto_reason}): recorded only", token_state
        )
    if kind == InboundKind.CALENDAR_REPLY and parsed.calendar is not None:
        cal = parsed.calendar
        answer = CalendarAnswer(cal.uid, cal.partstat, cal.sequence or 0, cal.attendee)
        message = InboundMessage(kind=kind, sender=sender, calendar=answer, **base)
        return Reading(
            message, f"calendar reply: invite uid {cal.uid}, attendee {cal.attendee}", token_state
        )
    in_reply_to = _our_parent(parsed, settings)
    # A reply in a participant's conversation (our token) is never an organiser's command.
    command = _command(parsed) if target is None else None
    if command is not None and sender is not None:
        # For the organisers' router, which decides whose it is; answered to the sender. The
        # whole mail goes with it: what is no command goes on as the text it is.
        if command != parsed.text.strip():
            base["meta"] = {**base["meta"], "command_in": "subject"}
        message = InboundMessage(
            kind=InboundKind.COMMAND,
            sender=sender,
            text=command,
            answers=dict(parsed.answers),
            in_reply_to=in_reply_to,
            caller=Caller(Channel.EMAIL, sender.address),
            **base,
        )
        return Reading(message, f"a command: {command.split()[0]}", token_state)
    message = InboundMessage(
        kind=InboundKind.TEXT,
        sender=sender,
        text=parsed.text,
        answers=dict(parsed.answers),
        in_reply_to=in_reply_to,
        target=target,
        **base,
    )
    if target is not None:
        routing = f"token: {target.gathering}/{target.flow} person {target.person}"
    elif in_reply_to is not None:
        routing = f"in-reply-to {in_reply_to}, else the sender's runs"
    else:
        routing = "the sender's runs, else a new conversation"
    return Reading(message, routing, token_state)


def to_inbound(
    parsed: ParsedEmail,
    settings: EmailSettings,
    *,
    raw: bytes,
    conversations: Conversations | None = None,
    received_at: datetime | None = None,
) -> InboundMessage:
    """The InboundMessage the engine gets for this mail."""
    return read_email(
        parsed, settings, raw=raw, conversations=conversations, received_at=received_at
    ).message


def parse_raw(raw: bytes, settings: EmailSettings, recipients: Iterable[str] = ()) -> ParsedEmail:
    """Read a mail; `recipients` are envelope addresses its headers may not show."""
    return parse_email(
        raw,
        own_addresses=own_addresses(settings),
        authserv_id=settings.authserv_id,
        envelope_recipients=recipients,
    )


def _bounce(parsed: ParsedEmail, base: dict[str, Any], token_state: str) -> Reading:
    info = parsed.bounce
    failed = list(info.recipients) if info else []
    payload = {
        "failed": failed,
        "permanent": info.permanent if info else True,
        "status": info.status if info else None,
        "original_message_id": info.original_message_id if info else None,
    }
    message = InboundMessage(kind=InboundKind.BOUNCE, payload=payload, **base)
    state = "permanent" if payload["permanent"] else "delayed"
    return Reading(
        message, f"bounce ({state}) for {', '.join(failed) or 'no address'}", token_state
    )


def _token_target(
    parsed: ParsedEmail, settings: EmailSettings, conversations: Conversations
) -> tuple[str, Target | None]:
    """("none" | "invalid" | "unknown conversation" | "valid", target)."""
    if not parsed.token:
        return "none", None
    claims = verify_token(settings.token_secret.get().encode(), parsed.token)
    if claims is None:
        # A mangled or forged token proves nothing; routing falls back to the other facts.
        return "invalid", None
    run = conversations.get(claims.conversation)
    if run is None:
        return "unknown conversation", None
    return "valid", Target(run[0], run[1], PersonId(claims.person_id))


def _our_parent(parsed: ParsedEmail, settings: EmailSettings) -> str | None:
    """The most recent of our Message-IDs this mail answers; else its In-Reply-To as is."""
    domain = "@" + settings.address.rpartition("@")[2].lower() + ">"
    candidates = [parsed.in_reply_to] if parsed.in_reply_to else []
    candidates += reversed(parsed.references)
    ours = [c for c in candidates if c.lower().endswith(domain)]
    return ours[0] if ours else parsed.in_reply_to


def _command(parsed: ParsedEmail) -> str | None:
    """An organiser's command: the new text when it starts with "!word", else the subject
    when it does, followed by the text (a signature, or an announcement's body)."""
    if is_command_line(parsed.text):
        return parsed.text.strip()
    if is_command_line(parsed.subject):
        return f"{parsed.subject.strip()}\n{parsed.text.strip()}".strip()
    return None


def _meta(parsed: ParsedEmail) -> dict[str, str]:
    meta = {"subject": parsed.subject[:200], "email_kind": parsed.kind}
    if parsed.auth_detail:
        meta["authentication"] = parsed.auth_detail[:200]
    if parsed.attachments_skipped:
        meta["attachments_skipped"] = str(parsed.attachments_skipped)
    return meta


def inspect_email(
    raw: bytes, settings: EmailSettings, *, conversations: Conversations | None = None
) -> dict[str, Any]:
    """What the service would make of this mail, as JSON-ready data (`gateway mail inspect`).

    `conversations` (from `conversation_index`) lets a token name its gathering and flow;
    without it a genuine token shows as "unknown conversation".
    """
    parsed = parse_raw(raw, settings)
    reading = read_email(parsed, settings, raw=raw, conversations=conversations)
    message = reading.message
    report: dict[str, Any] = {
        "kind": message.kind.value,
        "email_kind": parsed.kind,
        "external_id": message.external_id,
        "from": parsed.from_address,
        "subject": parsed.subject,
        "text": message.text,
        "answers": {str(k): v for k, v in sorted(message.answers.items())},
        "in_reply_to": message.in_reply_to,
        "token": reading.token,
        "target": (
            {
                "gathering": message.target.gathering,
                "flow": message.target.flow,
                "person": int(message.target.person),
            }
            if message.target
            else None
        ),
        "authentication": {"failed": parsed.auth_failed, "detail": parsed.auth_detail},
        "routing": reading.routing,
    }
    if message.calendar is not None:
        report["calendar"] = {
            "uid": message.calendar.uid,
            "partstat": message.calendar.partstat,
            "sequence": message.calendar.sequence,
            "attendee": message.calendar.attendee,
        }
    if message.kind == InboundKind.BOUNCE:
        report["bounce"] = dict(message.payload)
    if message.kind == InboundKind.AUTO_REPLY:
        report["auto_reason"] = parsed.auto_reason
    return report

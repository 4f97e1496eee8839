"""Recognise mail that no person typed: auto-replies and delivery failures.

Such mail must never be read as an answer (an out-of-office saying "back on the 3rd"
is not a yes), and bounces tell the service that an address is dead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses

__all__ = [
    "BounceInfo",
    "auto_reply_reason",
    "bounce_info",
    "header_text",
    "header_texts",
    "is_daemon",
    "param",
]

_ENCODED_LIMIT = 200_000  # never read more of a bounce's human part than this
_MAX_HEADER = 8_000  # far above any real header but one of our own long References

_AUTO_SUBJECT = re.compile(
    r"^[ \t]*(?:out[ \t]+of[ \t]+(?:the[ \t]+)?office|automatic[ \t]+reply[ \t]*:"
    r"|auto(?:matic)?[ \t]*-?[ \t]*re(?:ply|sponse)[ \t]*:|autoreply\b|auto[ \t]*:"
    r"|automatische[ \t]+antwort[ \t]*:|abwesenheitsnotiz|abwesend[ \t]*:"
    r"|réponse[ \t]+automatique[ \t]*:|absence[ \t]*:|absent(?:e|\(e\))?[ \t]+du[ \t]+bureau"
    r"|respuesta[ \t]+automática[ \t]*:|fuera[ \t]+de[ \t]+la[ \t]+oficina"
    r"|resposta[ \t]+automática[ \t]*:|ausente[ \t]+do[ \t]+escritório"
    r"|automatisch[ \t]+antwoord[ \t]*:|afwezig[ \t]*:|risposta[ \t]+automatica[ \t]*:)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered[ \t]+mail|delivery[ \t]+(?:status[ \t]+notification[ \t]+\(failure"
    r"|has[ \t]+failed|failure|failed)|mail[ \t]+delivery[ \t]+failed|failure[ \t]+notice"
    r"|returned[ \t]+mail|unzustellbar|nicht[ \t]+zustellbar|non[ \t]+remis|non[ \t]+distribuable"
    r"|no[ \t]+se[ \t]+puede[ \t]+entregar|onbestelbaar|não[ \t]+entregue",
    re.IGNORECASE,
)
_DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_MESSAGE_ID = re.compile(r"^message-id:[ \t]*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply", "list"})


@dataclass(frozen=True)
class BounceInfo:
    """A delivery failure (or delay) report.

    ``permanent`` is true for 5.x.x status codes and for classic bounces without a code:
    those come from MTAs that gave up.  4.x.x means the MTA is still retrying.
    """

    recipients: tuple[str, ...]
    status: str | None
    permanent: bool
    original_message_id: str | None
    diagnostic: str | None


def _clean(value: str) -> str:
    # Undecodable bytes survive header parsing as lone surrogates; make them printable.
    return value.encode("utf-8", "replace").decode("utf-8")


def header_texts(msg: Message, name: str, *, decode: bool = True) -> list[str]:
    """All values of a header, decoded; never raises on malformed headers.

    policy.default parses header values in superlinear time, so a hostile megabyte-long
    header would stall the codec: values are cut to _MAX_HEADER first.  With
    ``decode=False`` the raw (unfolded) value is returned, for headers such as References
    that are only scanned with a regex and may legitimately be long.
    """
    values: list[str] = []
    for key, value in msg.raw_items():
        if key.lower() != name.lower():
            continue
        value = str(value)
        if not decode:
            values.append(_clean(re.sub(r"\r?\n[ \t]", " ", value)))
            continue
        try:
            values.append(_clean(str(policy.default.header_fetch_parse(key, value[:_MAX_HEADER]))))
        except Exception:  # noqa: BLE001 - the header parser has failure modes on hostile input
            values.append(_clean(value[:_MAX_HEADER]))
    return values


def param(part: Message, name: str) -> str:
    """A Content-Type parameter, lower-cased, RFC 2231 continuations collapsed; "" if absent."""
    try:
        value = part.get_param(name)
        return collapse_rfc2231_value(value).strip().lower() if value else ""
    except Exception:  # noqa: BLE001 - RFC 2231 decoding can fail on garbage
        return ""


def header_text(msg: Message, name: str) -> str | None:
    values = header_texts(msg, name)
    return values[0].strip() if values else None


def auto_reply_reason(msg: Message, subject: str) -> str | None:
    """Why this mail looks machine-sent, or None for a person's mail.

    ``X-Auto-Response-Suppress`` alone proves nothing: Outlook and many bulk senders put it
    on ordinary mail to *prevent* auto-replies.  It only counts next to a localized
    auto-reply subject, which is how older Exchange servers mark out-of-office replies.
    """
    auto_submitted = (header_text(msg, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"):
        if header_text(msg, name) is not None:
            return f"{name} header"
    if (header_text(msg, "X-Autogenerated") or "").lower() == "reply":
        return "X-Autogenerated: reply"
    for name in ("Precedence", "X-Precedence"):
        precedence = (header_text(msg, name) or "").lower()
        if precedence in _BULK_PRECEDENCE:
            return f"{name}: {precedence}"
    subject_match = _AUTO_SUBJECT.match(subject)
    if subject_match and header_text(msg, "X-Auto-Response-Suppress") is not None:
        return f"auto-reply subject and X-Auto-Response-Suppress: {subject_match.group(0).strip()}"
    if subject_match:
        return f"auto-reply subject: {subject_match.group(0).strip()}"
    if header_text(msg, "X-MS-Exchange-Inbox-Rules-Loop") is not None:
        return "generated by an Exchange inbox rule"
    return None


def _report_blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part, however it was parsed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    chunks = re.split(r"\n[ \t]*\n", text)
    return [HeaderParser().parsestr(chunk.strip() + "\n") for chunk in chunks]


def _recipient(value: str) -> str | None:
    address = value.split(";", 1)[-1].strip().strip("<>").lower()
    return address if "@" in address else None


def _delivery_status(msg: Message) -> tuple[list[str], str | None, str | None, bool] | None:
    """(failed recipients, status, diagnostic, delivered-only) from a DSN, or None."""
    for part in _top_parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        failed: list[str] = []
        status: str | None = None
        diagnostic: str | None = None
        saw_recipient = False
        for block in _report_blocks(part):
            recipient = _recipient(str(block.get("Final-Recipient", "")))
            if recipient is None:
                continue
            saw_recipient = True
            action = str(block.get("Action", "")).strip().lower()
            block_status = str(block.get("Status", "")).strip()
            if action in ("failed", "delayed") or block_status[:1] in ("4", "5"):
                failed.append(recipient)
                status = status or (block_status or None)
                diagnostic = diagnostic or (str(block.get("Diagnostic-Code", "")).strip() or None)
        return failed, status, diagnostic, saw_recipient and not failed
    return None


def _top_parts(msg: Message) -> list[Message]:
    """Leaf and message/* parts, without descending into attached messages."""
    found: list[Message] = []
    stack: list[Message] = [msg]
    while stack and len(found) < 200:
        part = stack.pop(0)
        if part.get_content_maintype() == "message" or not part.is_multipart():
            found.append(part)
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
    return found


def _original_message_id(msg: Message, body: str) -> str | None:
    for part in _top_parts(msg):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                value = header_text(payload[0], "Message-ID")
                if value:
                    return value
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                match = _MESSAGE_ID.search(raw[:_ENCODED_LIMIT].decode("utf-8", "replace"))
                if match:
                    return match.group(1)
    match = _MESSAGE_ID.search(body[:_ENCODED_LIMIT])
    return match.group(1) if match else None


def is_daemon(from_address: str | None, msg: Message) -> bool:
    local = (from_address or "").partition("@")[0]
    return local in _DAEMONS or (header_text(msg, "Return-Path") or "").strip() == "<>"


def bounce_info(
    msg: Message,
    subject: str,
    from_address: str | None,
    body: str,
    own_addresses: frozenset[str],
) -> BounceInfo | None:
    """Delivery failure details when ``msg`` is a bounce, else None.

    A standard DSN (RFC 3464) is read field by field.  Classic bounces (qmail "failure
    notice", old Exchange) only have prose, so they are recognised by a daemon sender
    plus a bounce subject, and the failed addresses are guessed from the text.
    """
    ctype = msg.get_content_type()
    report_type = param(msg, "report-type")
    dsn = _delivery_status(msg) if ctype == "multipart/report" else None
    x_failed = [
        address.lower()
        for _, address in getaddresses(header_texts(msg, "X-Failed-Recipients"))
        if "@" in address
    ]
    if dsn is None and report_type == "delivery-status":
        dsn = ([], None, None, False)
    if dsn is not None:
        failed, status, diagnostic, delivered_only = dsn
        if delivered_only:
            return None
    elif is_daemon(from_address, msg) and (_BOUNCE_SUBJECT.search(subject) or x_failed):
        failed, status, diagnostic = [], None, None
    else:
        return None
    head = body[:_ENCODED_LIMIT]
    if not status:
        match = _STATUS.search(head)
        status = match.group(0) if match else None
    if not failed:
        failed = x_failed or _guess_recipients(head, from_address, own_addresses)
    return BounceInfo(
        recipients=tuple(dict.fromkeys(failed)),
        status=status,
        permanent=not (status or "").startswith("4"),
        original_message_id=_original_message_id(msg, body),
        diagnostic=diagnostic,
    )


def _guess_recipients(text: str, from_address: str | None, own: frozenset[str]) -> list[str]:
    """Addresses in a prose bounce before the returned message starts."""
    cut = re.search(
        r"^(?:[-=]{3,}.*|.*original message.*|message-id:.*|from:.*)$",
        text,
        re.IGNORECASE | re.MULTILINE,
    )
    head = text[: cut.start()] if cut else text
    ignore = {from_address or "", *own}
    return [
        found.lower()
        for found in _ADDRESS.findall(head)
        if found.lower() not in ignore and found.split("@")[0].lower() not in _DAEMONS
    ]

"""Inbound email codec: raw RFC 5322 bytes -> a typed, normalised reading of the message.

Pure and total: no I/O, and ``parse_email`` never raises.  Anything it cannot make sense
of comes back as ``kind="rejected"`` with a human-readable ``reason``, so a transport can
log it and move on instead of retrying a poisoned message forever.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import policy
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any, Literal

from gateway.channels.email.html import html_to_text
from gateway.channels.email.ical.reply import CalendarReply, parse_reply
from gateway.channels.email.kinds import (
    BounceInfo,
    auto_reply_reason,
    bounce_info,
    header_text,
    header_texts,
    is_daemon,
    param,
)
from gateway.channels.email.reply_extract import extract_answers, extract_reply, normalise
from gateway.channels.email.token import token_from_address

__all__ = ["BounceInfo", "Kind", "ParsedEmail", "parse_email"]

Kind = Literal["reply", "new", "calendar_reply", "auto_reply", "bounce", "rejected"]

DEFAULT_MAX_ATTACHMENT_BYTES = 2_000_000
_MAX_DEPTH = 12  # nesting of multiparts; deeper is a parser bomb, not a reply
_MAX_PARTS = 300
#: The parser is fed this much at a time: decoding the whole mail at once would be one more
#: copy of it, as large as the mail (four times as large with one non-ASCII byte in it).
_FEED_CHUNK = 1024 * 1024
#: Where the header of a mail that cannot be parsed is looked for.
_SALVAGE_HEAD = 256 * 1024
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "Resent-To")
_MSG_ID = re.compile(r"<[^<>\s]{1,250}>")
_COMMENT = re.compile(r"\([^()]*\)")
_AUTH_RESULT = re.compile(r"\b(dmarc|dkim)[ \t]*=[ \t]*([a-z]+)", re.IGNORECASE)
# WHATWG maps these labels to supersets: Outlook labels windows-1252 text iso-8859-1.
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-sjis": "shift_jis",
    "windows-874": "cp874",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
}


@dataclass(frozen=True)
class ParsedEmail:
    """What an inbound mail says, decoded and normalised.

    ``text`` is only the newly typed text; ``full_text`` the whole body as text.  Message
    ids keep their angle brackets.  ``token`` is unverified: see email_token.verify_token.
    """

    kind: Kind
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    from_address: str | None = None
    from_name: str | None = None
    to_addresses: tuple[str, ...] = ()
    subject: str = ""
    date: datetime | None = None
    text: str = ""
    full_text: str = ""
    answers: dict[int, str] = field(default_factory=dict)
    calendar: CalendarReply | None = None
    bounce: BounceInfo | None = None
    token: str | None = None
    auth_failed: bool = False
    auth_detail: str | None = None
    auto_reason: str | None = None
    reason: str | None = None
    attachments_skipped: int = 0


@dataclass
class _Parts:
    plain: Message | None = None
    html: Message | None = None
    calendars: list[Message] = field(default_factory=list)
    skipped: int = 0
    seen: int = 0


def _collect(part: Message, found: _Parts, depth: int = 0) -> None:
    """Find the body parts; attachments and attached messages are only counted.

    An attached message/rfc822 is never descended into: a forwarded mail's text is not
    what the person wrote now.
    """
    found.seen += 1
    if depth > _MAX_DEPTH or found.seen > _MAX_PARTS:
        found.skipped += 1
        return
    ctype = part.get_content_type()
    filename = (part.get_filename() or "").lower()
    if ctype in ("text/calendar", "application/ics") or filename.endswith(".ics"):
        found.calendars.append(part)
        return
    if part.get_content_maintype() == "message":
        found.skipped += 1
        return
    payload = part.get_payload()
    if part.is_multipart() and isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                _collect(sub, found, depth + 1)
        return
    if part.get_content_disposition() == "attachment":
        found.skipped += 1
    elif ctype == "text/plain" and found.plain is None:
        found.plain = part
    elif ctype == "text/html" and found.html is None:
        found.html = part
    else:
        found.skipped += 1


def _payload_bytes(part: Message, limit: int) -> bytes | None:
    """Decoded payload, or None when the encoded size is over ``limit`` (never decoded)."""
    raw = part.get_payload()
    if not isinstance(raw, str) or len(raw) > limit:
        return None
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else None


def _too_large(part: Message | None, limit: int) -> bool:
    """Whether a body part went unread because it is over ``limit`` (see _payload_bytes)."""
    if part is None:
        return False
    raw = part.get_payload()
    return isinstance(raw, str) and len(raw) > limit


def _decode(data: bytes, charset: str | None) -> str:
    """Bytes -> text under the declared charset, falling back to UTF-8 with replacement."""
    label = (charset or "utf-8").strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        codecs.lookup(label)
    except LookupError:
        label = "utf-8"
    for candidate in dict.fromkeys((label, "utf-8")):
        try:
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode(label, errors="replace")


def _part_text(part: Message | None, limit: int) -> str | None:
    if part is None:
        return None
    data = _payload_bytes(part, limit)
    if data is None:
        return None
    text = _decode(data, _charset(part))
    if param(part, "format") == "flowed":
        delsp = param(part, "delsp") == "yes"
        text = _unflow(text, delsp=delsp)
    return text


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:  # noqa: BLE001 - RFC 2231 parameter decoding can fail on garbage
        return None


def _unflow(text: str, *, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed soft line breaks (Apple Mail, Thunderbird)."""
    out: list[str] = []
    pending: tuple[int, str] | None = None
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        depth = len(raw_line) - len(raw_line.lstrip(">"))
        line = raw_line[depth:]
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if pending is not None and pending[0] == depth:
            line = pending[1] + line
        elif pending is not None:
            out.append(">" * pending[0] + (" " if pending[0] else "") + pending[1])
        pending = None
        if line.endswith(" ") and line != "-- ":
            pending = (depth, line[:-1] if delsp else line)
            continue
        out.append(">" * depth + (" " if depth else "") + line)
    if pending is not None:
        out.append(">" * pending[0] + (" " if pending[0] else "") + pending[1])
    return "\n".join(out)


def _address(value: str) -> str:
    return value.strip().strip("<>").lower()


def _calendar_reply(parts: list[Message], limit: int, sender: str | None) -> CalendarReply | None:
    """The first calendar part that is an attendee's answer (read by calendar.parse_reply)."""
    for part in parts:
        data = _payload_bytes(part, limit)
        if data:
            reply = parse_reply(_decode(data, _charset(part)), sender)
            if reply is not None:
                return reply
    return None


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _aware(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _auth_failure(msg: Message, authserv_id: str | None = None) -> tuple[bool, str | None]:
    """Read only our own server's Authentication-Results header.

    Our own MTA prepends its verdict above everything else; any header further down was
    written by servers we do not control (or by the sender, to forge a pass).  With
    `authserv_id` configured, the top-most header must also carry it, else there is no
    verdict. DKIM is a failure only if no signature passed: mailing lists routinely break
    one of several.
    """
    values = header_texts(msg, "Authentication-Results")
    if not values:
        return False, None
    top = values[0]
    if authserv_id is not None:
        server = top.split(";", 1)[0].split()
        if not server or server[0].lower() != authserv_id.lower():
            return False, None
    results: dict[str, set[str]] = {}
    for method, result in _AUTH_RESULT.findall(_COMMENT.sub("", top)):
        results.setdefault(method.lower(), set()).add(result.lower())
    failed = "fail" in results.get("dmarc", set()) or (
        "fail" in results.get("dkim", set()) and "pass" not in results.get("dkim", set())
    )
    detail = " ".join(" ".join(top.split()).split(";")[1:]).strip() or None
    return failed, detail


def _message_ids(value: str | None) -> list[str]:
    return _MSG_ID.findall(value or "")


def _first_id(value: str | None) -> str | None:
    ids = _message_ids(value)
    return ids[0] if ids else ((value or "").strip() or None)


def parse_email(
    raw: bytes,
    *,
    own_addresses: set[str] | frozenset[str],
    question_count: int | None = None,
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
    authserv_id: str | None = None,
    envelope_recipients: Iterable[str] = (),
) -> ParsedEmail:
    """Read one inbound mail.  Never raises; unusable input is ``kind="rejected"``.

    `authserv_id` names our own mail server in Authentication-Results; given, only its
    verdict counts (RFC 8601 section 5: others may be forged by the sender).
    `envelope_recipients` (RCPT TO of the listener) may carry the reply token when the
    headers do not."""
    try:
        own = frozenset(a.strip().lower() for a in own_addresses)
        return _parse(
            raw, own, question_count, max_attachment_bytes, authserv_id, tuple(envelope_recipients)
        )
    except Exception as error:  # noqa: BLE001 - totality is the contract of this function
        reason = f"unreadable message ({type(error).__name__})"
        return ParsedEmail(kind="rejected", reason=reason, **_salvage(raw, authserv_id))


def _salvage(raw: bytes, authserv_id: str | None) -> dict[str, Any]:
    """Who to tell that their mail could not be read: the From of its header alone.

    Nobody when the header cannot be read either, when it is a machine's mail (a bounce
    or an auto-reply must not be answered) or when our server says the From is forged.
    """
    try:
        head = raw[:_SALVAGE_HEAD].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        msg = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
        _, address = parseaddr(header_text(msg, "From") or "")
        subject = " ".join((header_text(msg, "Subject") or "").split())
        failed, _ = _auth_failure(msg, authserv_id)
        machine = auto_reply_reason(msg, subject) or is_daemon(address.lower(), msg)
        if "@" not in address or failed or machine:
            return {}
        return {
            "from_address": _address(address),
            "subject": subject,
            "message_id": _first_id(" ".join(header_texts(msg, "Message-ID", decode=False)[:1])),
        }
    except Exception:  # noqa: BLE001 - a header beyond reading: nobody to tell
        return {}


def _message(raw: bytes) -> Message:
    """The MIME structure, parsed with compat32: policy.default parses every part's
    Content-Type while splitting the message, in superlinear time, so one hostile header
    line could stall the codec. Header values are still decoded with policy.default, after
    being cut to a sane length (see header_texts)."""
    parser = BytesFeedParser(policy=policy.compat32)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(bytes(view[start : start + _FEED_CHUNK]))
    return parser.close()


def _parse(
    raw: bytes,
    own: frozenset[str],
    question_count: int | None,
    limit: int,
    authserv_id: str | None = None,
    envelope_recipients: tuple[str, ...] = (),
) -> ParsedEmail:
    if not raw or raw.isspace():
        return ParsedEmail(kind="rejected", reason="empty message")
    msg = _message(raw)
    if not msg.keys():
        return ParsedEmail(kind="rejected", reason="no headers: not an email message")
    from_name, from_address = parseaddr(header_text(msg, "From") or "")
    from_address = _address(from_address) if "@" in from_address else ""
    subject = " ".join((header_text(msg, "Subject") or "").split())
    parts = _Parts()
    _collect(msg, parts)
    plain = _part_text(parts.plain, limit)
    html = _part_text(parts.html, limit)
    body = plain if plain and plain.strip() else html_to_text(html or "", prune=False)
    full_text = normalise(body)
    auth_failed, auth_detail = _auth_failure(msg, authserv_id)
    to_cc = header_texts(msg, "To") + header_texts(msg, "Cc")
    base = ParsedEmail(
        kind="rejected",
        message_id=_first_id(" ".join(header_texts(msg, "Message-ID", decode=False)[:1])),
        in_reply_to=_first_id(" ".join(header_texts(msg, "In-Reply-To", decode=False)[:1])),
        references=tuple(_message_ids(" ".join(header_texts(msg, "References", decode=False)))),
        from_address=from_address or None,
        from_name=from_name.strip() or None,
        to_addresses=tuple(dict.fromkeys(_address(a) for _, a in getaddresses(to_cc) if "@" in a)),
        subject=subject,
        date=_parse_date(header_text(msg, "Date")),
        text=extract_reply(plain or "", html=html),
        full_text=full_text,
        auth_failed=auth_failed,
        auth_detail=auth_detail,
        attachments_skipped=parts.skipped + len(parts.calendars),
    )
    # Bounces carry the token too when the gateway sends with a tagged (VERP) Return-Path.
    recipients = getaddresses([v for name in _RECIPIENT_HEADERS for v in header_texts(msg, name)])
    recipients += [("", r) for r in envelope_recipients]
    token = next((t for _, a in recipients if (t := token_from_address(a, own))), None)
    bounce = bounce_info(msg, subject, from_address or None, full_text, own)
    if bounce is not None:
        return replace(base, kind="bounce", bounce=bounce, token=token)
    if not from_address:
        return replace(base, reason="no usable From address")
    calendar = _calendar_reply(parts.calendars, limit, from_address)
    if calendar is not None:
        return replace(
            base,
            kind="calendar_reply",
            calendar=calendar,
            token=token,
            attachments_skipped=base.attachments_skipped - 1,
        )
    auto_reason = auto_reply_reason(msg, subject)
    if auto_reason is not None:
        return replace(base, kind="auto_reply", auto_reason=auto_reason, token=token)
    unread = _too_large(parts.plain, limit) or _too_large(parts.html, limit)
    if unread and not (plain and plain.strip()) and not (html and html.strip()):
        # Read as empty, it would be answered as if the person had said nothing.
        reason = (
            f"its text is longer than the {limit // 1000:,} kB we read"
            " (was something large pasted into it?)"
        )
        return replace(base, reason=reason, token=token)
    kind: Kind = "reply" if token or base.in_reply_to or base.references else "new"
    answers = extract_answers(full_text, base.text, question_count)
    return replace(base, kind=kind, answers=answers, token=token)

"""Compose outbound email (RFC 5322 / MIME) for participants, including iMIP invitations.

Pure: the same ``OutgoingEmail`` always yields the same bytes, so a message re-sent after a
crash is byte-identical and carries the same Message-ID, which receivers deduplicate.

Threading (how callers choose ``idempotency_key``, ``in_reply_to`` and ``references``)
--------------------------------------------------------------------------------------
Each participant's conversation about one flow should be one thread in Gmail, Outlook,
Apple Mail and Thunderbird:

* The first message of the conversation gets an idempotency key naming the conversation
  itself, e.g. ``f"{gathering}:{flow}:{person}:root"``; ``message_id_for(key, from)``
  gives its Message-ID, the *thread root*. Store nothing: it can be recomputed.
* Every later message has its own key (``...:step-3``, ``...:reminder-2``), sets
  ``in_reply_to`` to the message it follows (the person's last inbound Message-ID when
  answering them, else our previous message) and ``references`` to the root plus the
  parent chain, root first (RFC 5322 section 3.6.4). ``in_reply_to`` is appended to
  References automatically if missing; long chains may be trimmed to root + last few.
* Keep the Subject stable (a "Re: " prefix is fine): Gmail only threads messages whose
  subjects match, and Outlook groups conversations by normalised subject.

Auto-Submitted (RFC 3834 section 5)
-----------------------------------
``auto_generated=True`` writes ``auto-generated`` (section 5.1): messages the gateway
sends on its own schedule (reminders, invitations, announcements). ``auto_reply=True``
writes ``auto-replied`` (section 5.2), for a message generated *in response to* a
message the person sent; it needs ``in_reply_to`` (section 3.1.5). Both values tell
vacation responders not to answer (section 2), which prevents reply loops. A message a
human organiser wrote and the gateway merely relays sets neither.
"""

from __future__ import annotations

import hashlib
import html as html_lib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from gateway.calendar import ics_method

# Headers compose_email owns; extra_headers may not override them.
_MANAGED = frozenset(
    h.lower()
    for h in (
        "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
        "Reply-To", "Auto-Submitted", "X-Auto-Response-Suppress", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    )
)  # fmt: skip

DKIM_HEADERS = (
    "From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
    "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "Auto-Submitted", "List-Unsubscribe", "List-Unsubscribe-Post",
)  # fmt: skip


@dataclass(frozen=True)
class OutgoingEmail:
    from_address: str
    from_name: str
    to_address: str
    to_name: str
    subject: str
    text: str
    idempotency_key: str
    date: datetime
    html: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    reply_to: str | None = None
    auto_generated: bool = True
    auto_reply: bool = False
    list_unsubscribe: str | None = None
    calendar: bytes | None = None
    calendar_method: str | None = None
    attachments: Sequence[tuple[str, str, bytes]] = ()
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def message_id_for(idempotency_key: str, from_address: str) -> str:
    """Deterministic ``<hash@domain>`` Message-ID (RFC 5322 section 3.6.4).

    The right side is the sender's domain so the id is globally unique to us; the left
    side is a hash so it leaks nothing about the key.
    """
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    domain = from_address.rpartition("@")[2].lower().encode("idna").decode("ascii")
    return f"<{digest}@{domain}>"


def compose_email(spec: OutgoingEmail) -> EmailMessage:
    """Build the message; raises ValueError on an inconsistent spec."""
    msg = EmailMessage(policy=SMTP)
    _set_headers(msg, spec)
    msg.set_content(spec.text, cte=_text_cte(spec.text))
    body_html = spec.html if spec.html is not None else text_to_html(spec.text)
    msg.add_alternative(body_html, subtype="html", cte=_text_cte(body_html))
    if spec.calendar is not None:
        _add_calendar(msg, spec.calendar, _checked_method(spec.calendar, spec.calendar_method))
    for filename, mimetype, data in spec.attachments:
        maintype, _, subtype = mimetype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    _make_deterministic(msg, spec.idempotency_key)
    return msg


def _make_deterministic(msg: EmailMessage, key: str) -> None:
    """Fixed boundaries so a resend is byte-identical; drop MIME-Version from sub-parts.

    The boundary cannot occur in the encoded bodies: "=_" is impossible in base64 and
    quoted-printable output (RFC 2045 section 6.7 encodes "=" itself).
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    for index, part in enumerate(msg.walk()):
        if part is not msg:
            del part["MIME-Version"]  # only the top level needs it (RFC 2045 section 4)
        if part.is_multipart():
            part.set_boundary(f"=_{digest}_{index}")


def _set_headers(msg: EmailMessage, spec: OutgoingEmail) -> None:
    if spec.date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    msg["From"] = _address(spec.from_name, spec.from_address)
    msg["To"] = _address(spec.to_name, spec.to_address)
    _set_subject(msg, spec.subject)
    msg["Date"] = format_datetime(spec.date)
    msg["Message-ID"] = message_id_for(spec.idempotency_key, spec.from_address)
    _set_threading(msg, spec)
    if spec.reply_to:
        msg["Reply-To"] = spec.reply_to
    _set_auto_submitted(msg, spec)
    if spec.list_unsubscribe:
        _set_list_unsubscribe(msg, spec.list_unsubscribe)
    for name, value in spec.extra_headers.items():
        if name.lower() in _MANAGED:
            raise ValueError(f"{name} is set by compose_email")
        msg[name] = value


def _set_subject(msg: EmailMessage, subject: str) -> None:
    """RFC 2047 encoded Subject whose spaces survive folding.

    Python 3.11's header folder splits non-ASCII text into encoded-words separated by
    bare spaces, which RFC 2047 section 6.2 tells readers to drop ("AçãoAção"). The
    legacy ``Header`` encoder keeps spaces inside the encoded text, so its folded
    output is stored verbatim instead.
    """
    if "\r" in subject or "\n" in subject:
        raise ValueError("Subject may not contain line breaks")
    if subject.isascii():
        msg["Subject"] = subject
        return
    encoded = Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
    msg.set_raw("Subject", encoded)


def _address(name: str, address: str) -> Address:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    return Address(display_name=name, username=local, domain=domain)


def _msgid(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def _set_threading(msg: EmailMessage, spec: OutgoingEmail) -> None:
    references = [_msgid(r) for r in spec.references]
    if spec.in_reply_to:
        parent = _msgid(spec.in_reply_to)
        msg["In-Reply-To"] = parent
        if parent not in references:
            references.append(parent)
    if references:
        msg["References"] = " ".join(references)


def _set_auto_submitted(msg: EmailMessage, spec: OutgoingEmail) -> None:
    if spec.auto_reply:
        if not spec.in_reply_to:
            raise ValueError("auto_reply needs in_reply_to (RFC 3834 section 3.1.5)")
        msg["Auto-Submitted"] = "auto-replied"
    elif spec.auto_generated:
        msg["Auto-Submitted"] = "auto-generated"
    else:
        return
    # Exchange/Outlook honour this instead of Auto-Submitted for out-of-office replies
    # ([MS-OXCMAIL] 2.2.3.2.14); meeting responses are not suppressed by it.
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"


def _set_list_unsubscribe(msg: EmailMessage, value: str) -> None:
    """RFC 2369 List-Unsubscribe; with an https URI, RFC 8058 one-click as well."""
    uris = [u.strip().strip("<>") for u in value.split(",") if u.strip()]
    msg["List-Unsubscribe"] = ", ".join(f"<{u}>" for u in uris)
    if any(u.lower().startswith("https://") for u in uris):
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def _checked_method(ics: bytes, requested: str | None) -> str:
    """RFC 6047 section 2.4: the method= parameter MUST equal the VCALENDAR METHOD."""
    inside = ics_method(ics)
    if inside is None:
        raise ValueError("calendar has no METHOD; iMIP requires one (RFC 5546 section 3.1)")
    if requested is not None and requested.upper() != inside:
        raise ValueError(f"calendar_method {requested} != METHOD:{inside}")
    return inside


def _add_calendar(msg: EmailMessage, ics: bytes, method: str) -> None:
    """Gmail's own invitation layout, which Outlook, Apple Mail and Thunderbird accept.

    multipart/mixed
      multipart/alternative: text/plain, text/html, text/calendar; method=...
      application/ics; name="invite.ics" (attachment)
    The inline text/calendar part is what Outlook and Gmail turn into the RSVP buttons
    (RFC 6047 section 2.4); the attachment serves clients that only offer attachments.
    Base64 keeps the CRLF line folding of the iCalendar data intact (RFC 6047 2.5).
    """
    msg.add_alternative(
        ics, "text", "calendar", cte="base64", params={"method": method, "charset": "UTF-8"}
    )
    msg.add_attachment(
        ics, "application", "ics", filename="invite.ics", params={"name": "invite.ics"}
    )


def _text_cte(text: str) -> str:
    """7bit when it is safe, else quoted-printable.

    Never 8bit: a relay without 8BITMIME would re-encode the body and break the DKIM
    body hash (RFC 6376 section 5.3), and QP also keeps every line under 998 octets.
    """
    if text.isascii() and all(len(line) <= 78 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def text_to_html(text: str) -> str:
    """Minimal safe HTML: escaped, blank-line separated paragraphs, line breaks kept."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    body = "\n".join(
        "<p>" + "<br>\n".join(html_lib.escape(line) for line in p.strip("\n").split("\n")) + "</p>"
        for p in paragraphs
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f"<body>\n{body}\n</body></html>\n"
    )


def dkim_sign(raw: bytes, *, selector: str, domain: str, private_key_pem: bytes) -> bytes:
    """Prepend a DKIM-Signature (RFC 6376) to ``raw`` (CRLF, as ``msg.as_bytes()`` gives).

    relaxed/relaxed canonicalisation survives header re-folding by relays. The
    List-Unsubscribe pair must be signed for RFC 8058 one-click (section 4). Headers in
    ``DKIM_HEADERS`` absent from the message are not listed, so adding them later is
    not detected; the signer can only vouch for what it saw.
    """
    import dkim  # optional dependency (extra "dkim"), imported only when signing

    present = {line.split(b":", 1)[0].strip().lower() for line in _header_lines(raw)}
    include = [h.encode() for h in DKIM_HEADERS if h.lower().encode() in present]
    signature: bytes = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        private_key_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
    )
    return signature + raw


def _header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n") if line and line[:1] not in (b" ", b"\t")]

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

import base64
import hashlib
import html as html_lib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, quoprimime
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache
from urllib.parse import quote

from gateway.channels.email.ical.invite import ics_method

# Headers compose_email owns; extra_headers may not override them.
_MANAGED = frozenset(
    h.lower()
    for h in (
        "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
        "Reply-To", "Auto-Submitted", "X-Auto-Response-Suppress", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    )
)  # fmt: skip

#: A body line that needs no encoding: printable ASCII and tabs (no bare controls).
_SEVEN_BIT = re.compile(rb"[\t\x20-\x7e]*")
#: An RFC 2045 token (MIME type parts, header names, the iMIP method).
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
#: An unquoted local part (RFC 5322 3.4.1; dots anywhere, as some old addresses have them),
#: with RFC 6532's UTF-8 characters as atext too.
_LOCAL_ATOMS = re.compile(r"(?:[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f\s])+")
#: A quoted local part: printable ASCII and spaces, quotes and backslashes escaped.
_LOCAL_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
#: A domain after IDNA: letters, digits, hyphens and dots (or an address literal).
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[A-Za-z0-9.:]+\]")
#: A display name that is a plain phrase of atoms needs no quoting (RFC 5322 3.2.3).
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+( [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")

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
    """The message as an object (for inspection); raises ValueError on an inconsistent spec."""
    message = message_from_bytes(compose_bytes(spec), policy=SMTP)
    assert isinstance(message, EmailMessage)
    return message


def compose_bytes(spec: OutgoingEmail) -> bytes:
    """The wire form: CRLF, 7-bit clean, lines under 998 octets; raises ValueError.

    Written directly rather than through ``email.message.EmailMessage``: its header
    registry and generator cost about five milliseconds a message, most of the time of
    sending a gathering's invitations. The MIME written here is fixed and small (Gmail's
    invitation layout, see ``_calendar_parts``), so the few rules it needs are kept here.
    Boundaries derive from the idempotency key, so a resend is byte-identical; the
    boundary cannot occur in the encoded bodies: "=_" is impossible in base64 and
    quoted-printable output (RFC 2045 section 6.7 encodes "=" itself).
    """
    head = _headers(spec)
    digest = hashlib.sha256(spec.idempotency_key.encode()).hexdigest()[:24]
    body_html = spec.html if spec.html is not None else text_to_html(spec.text)
    alternative = [_text_part("plain", spec.text), _text_part("html", body_html)]
    attachments = [_attachment(name, mimetype, data) for name, mimetype, data in spec.attachments]
    if spec.calendar is not None:
        method = _checked_method(spec.calendar, spec.calendar_method)
        calendar, attached = _calendar_parts(spec.calendar, method)
        alternative.append(calendar)
        attachments.insert(0, attached)
    if attachments:
        inner = _multipart("alternative", alternative, f"=_{digest}_1")
        top = _multipart("mixed", [inner, *attachments], f"=_{digest}_0")
    else:
        top = _multipart("alternative", alternative, f"=_{digest}_0")
    # UTF-8 only in an address with a non-ASCII local part, which is sent with SMTPUTF8
    # (RFC 6532); everything else in the header is ASCII by now.
    return (head + "MIME-Version: 1.0\r\n").encode("utf-8") + top


def _multipart(subtype: str, parts: Sequence[bytes], boundary: str) -> bytes:
    sep = f"--{boundary}\r\n".encode()
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
        + b"".join(sep + part + b"\r\n" for part in parts)
        + f"--{boundary}--\r\n".encode()
    )


def _text_part(subtype: str, text: str) -> bytes:
    """7bit when it is safe, else quoted-printable.

    Never 8bit: a relay without 8BITMIME would re-encode the body and break the DKIM
    body hash (RFC 6376 section 5.3), and QP also keeps every line under 998 octets.
    """
    # Split as bytes: str.splitlines() would also break at U+2028, form feeds and the like.
    lines = text.encode().splitlines()
    if all(len(line) <= 78 and _SEVEN_BIT.fullmatch(line) for line in lines):
        cte, body = "7bit", b"".join(line + b"\r\n" for line in lines).decode("ascii")
    else:
        data = b"".join(line + b"\n" for line in lines).decode("latin-1")
        cte, body = "quoted-printable", quoprimime.body_encode(data, 76, eol="\r\n")
        body = body if body.endswith("\r\n") else body + "\r\n"
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n\r\n{body}"
    ).encode("ascii")


def _base64_part(headers: str, data: bytes) -> bytes:
    return _base64_head(headers) + _base64_body(data)


def _base64_head(headers: str) -> bytes:
    return f"{headers}Content-Transfer-Encoding: base64\r\n\r\n".encode()


def _base64_body(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _attachment(filename: str, mimetype: str, data: bytes) -> bytes:
    maintype, _, subtype = mimetype.partition("/")
    if not _TOKEN.fullmatch(maintype) or not _TOKEN.fullmatch(subtype):
        raise ValueError(f"not a MIME type: {mimetype!r}")
    return _base64_part(
        f"Content-Type: {maintype}/{subtype}\r\n"
        f"Content-Disposition: attachment; {_filename(filename)}\r\n",
        data,
    )


def _filename(name: str) -> str:
    """``filename="x"``, or RFC 2231 ``filename*=utf-8''...`` when it is not plain ASCII."""
    if name.isascii() and name.isprintable() and not any(c in name for c in '"\\'):
        return f'filename="{name}"'
    return f"filename*=utf-8''{quote(name, safe='')}"


def _headers(spec: OutgoingEmail) -> str:
    if spec.date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    fields = [
        ("From", _address(spec.from_name, spec.from_address)),
        ("To", _address(spec.to_name, spec.to_address)),
        ("Subject", _unstructured("Subject", spec.subject)),
        ("Date", format_datetime(spec.date)),
        ("Message-ID", message_id_for(spec.idempotency_key, spec.from_address)),
    ]
    fields += _threading(spec)
    if spec.reply_to:
        fields.append(("Reply-To", _address("", spec.reply_to)))
    fields += _auto_submitted(spec)
    if spec.list_unsubscribe:
        fields += _list_unsubscribe(spec.list_unsubscribe)
    for name, value in spec.extra_headers.items():
        if name.lower() in _MANAGED:
            raise ValueError(f"{name} is set by compose_email")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"not a header name: {name!r}")
        fields.append((name, _unstructured(name, value)))
    return "".join(_fold(name, value) for name, value in fields)


class _Encoded(str):
    """Header text already RFC 2047 encoded and folded by ``email.header.Header``."""


def _encode(value: str, name: str) -> _Encoded:
    # The encoder starts with a fold when the text starts with whitespace: not wanted.
    return _Encoded(Header(value, "utf-8", header_name=name).encode(linesep="\r\n").lstrip())


def _fold(name: str, value: str) -> str:
    """``Name: value`` CRLF, folded at spaces to 78 characters where it can be."""
    if isinstance(value, _Encoded):
        return f"{name}: {value}\r\n"
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{name} may not contain line breaks")
    if len(name) + len(value) <= 76:
        return f"{name}: {value}\r\n"
    lines, line = [], f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > 78 and line.strip() and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    return "\r\n".join([*lines, line]) + "\r\n"


@lru_cache(maxsize=256)
def _unstructured(name: str, value: str) -> str:
    """Subject-like text; RFC 2047 encoded-words when not ASCII.

    Python 3.11's header folder splits non-ASCII text into encoded-words separated by
    bare spaces, which RFC 2047 section 6.2 tells readers to drop ("AçãoAção"). The
    legacy ``Header`` encoder keeps spaces inside the encoded text. Cached: a fan-out
    repeats one subject for everyone.
    """
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name} may not contain line breaks")
    plain = value.isascii() and value.isprintable() and "=?" not in value
    if plain and not value.startswith(" ") and all(len(w) < 900 for w in value.split(" ")):
        return value
    return _encode(value, name)


@lru_cache(maxsize=1024)
def ascii_address(address: str) -> str:
    """The address as the wire needs it: an internationalised domain in its IDNA (punycode)
    form, e.g. ana@bücher.example → ana@xn--bcher-kva.example. The local part stays as it
    is: a non-ASCII one (jörg@…) can only be sent with SMTPUTF8 (see `needs_smtputf8`)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise ValueError(f"not an email domain: {domain!r}") from exc


def needs_smtputf8(address: str) -> bool:
    """Whether mail to `address` needs SMTPUTF8 (RFC 6531): its local part is not ASCII.

    A domain never does, it has an ASCII (IDNA) form; a local part has no other form."""
    return not ascii_address(address).isascii()


def _address(name: str, address: str) -> str:
    """``address`` or ``name <address>``; the name quoted or encoded as RFC 5322 needs.

    The local part may be quoted (``"john smith"@example.org``) or, for mail sent with
    SMTPUTF8, contain UTF-8 (RFC 6532 allows it in the header as it is)."""
    address = ascii_address(address)
    local, at, domain = address.rpartition("@")
    valid_local = _LOCAL_ATOMS.fullmatch(local) or _LOCAL_QUOTED.fullmatch(local)
    if not at or not valid_local or not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not an email address: {address!r}")
    name = " ".join(name.split())
    if not name:
        return address
    if not name.isascii() or not name.isprintable() or "=?" in name:
        return _Encoded(f"{_encode(name, 'To')} <{address}>")
    if _ATOMS.fullmatch(name):
        return f"{name} <{address}>"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{address}>'


def _msgid(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def _threading(spec: OutgoingEmail) -> list[tuple[str, str]]:
    references = [_msgid(r) for r in spec.references]
    fields = []
    if spec.in_reply_to:
        parent = _msgid(spec.in_reply_to)
        fields.append(("In-Reply-To", parent))
        if parent not in references:
            references.append(parent)
    if references:
        fields.append(("References", " ".join(references)))
    return fields


def _auto_submitted(spec: OutgoingEmail) -> list[tuple[str, str]]:
    if spec.auto_reply:
        if not spec.in_reply_to:
            raise ValueError("auto_reply needs in_reply_to (RFC 3834 section 3.1.5)")
        value = "auto-replied"
    elif spec.auto_generated:
        value = "auto-generated"
    else:
        return []
    # Exchange/Outlook honour X-Auto-Response-Suppress instead of Auto-Submitted for
    # out-of-office replies ([MS-OXCMAIL] 2.2.3.2.14); meeting responses are not suppressed.
    return [("Auto-Submitted", value), ("X-Auto-Response-Suppress", "OOF, AutoReply")]


def _list_unsubscribe(value: str) -> list[tuple[str, str]]:
    """RFC 2369 List-Unsubscribe; with an https URI, RFC 8058 one-click as well."""
    uris = [u.strip().strip("<>") for u in value.split(",") if u.strip()]
    fields = [("List-Unsubscribe", ", ".join(f"<{u}>" for u in uris))]
    if any(u.lower().startswith("https://") for u in uris):
        fields.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return fields


def _checked_method(ics: bytes, requested: str | None) -> str:
    """RFC 6047 section 2.4: the method= parameter MUST equal the VCALENDAR METHOD."""
    inside = ics_method(ics)
    if inside is None:
        raise ValueError("calendar has no METHOD; iMIP requires one (RFC 5546 section 3.1)")
    if requested is not None and requested.upper() != inside:
        raise ValueError(f"calendar_method {requested} != METHOD:{inside}")
    if not _TOKEN.fullmatch(inside):
        raise ValueError(f"not a calendar method: {inside!r}")
    return inside


def _calendar_parts(ics: bytes, method: str) -> tuple[bytes, bytes]:
    """Gmail's own invitation layout, which Outlook, Apple Mail and Thunderbird accept.

    multipart/mixed
      multipart/alternative: text/plain, text/html, text/calendar; method=...
      application/ics; name="invite.ics" (attachment)
    The inline text/calendar part is what Outlook and Gmail turn into the RSVP buttons
    (RFC 6047 section 2.4); the attachment serves clients that only offer attachments.
    Base64 keeps the CRLF line folding of the iCalendar data intact (RFC 6047 2.5).
    """
    body = _base64_body(ics)  # encoded once for both parts
    inline = _base64_head(f'Content-Type: text/calendar; charset="utf-8"; method={method}\r\n')
    attached = _base64_head(
        'Content-Type: application/ics; name="invite.ics"\r\n'
        'Content-Disposition: attachment; filename="invite.ics"\r\n'
    )
    return inline + body, attached + body


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
    """Prepend a DKIM-Signature (RFC 6376) to ``raw`` (CRLF, as ``compose_bytes`` gives).

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

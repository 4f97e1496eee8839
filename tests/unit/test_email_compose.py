"""Outbound email composition: MIME layout, headers, threading, iMIP and DKIM."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from gateway.channels.email.compose import (
    OutgoingEmail,
    compose_bytes,
    compose_email,
    dkim_sign,
    message_id_for,
    text_to_html,
)
from gateway.channels.email.ical.invite import Attendee, CalendarEvent, build_cancel, build_request
from tests.kit.optional import require_module

LISBON = ZoneInfo("Europe/Lisbon")
DATE = datetime(2026, 3, 1, 10, 0, tzinfo=LISBON)
ROOT = message_id_for("serra:arrival:zoe:root", "gateway@gw.example.org")

EVENT = CalendarEvent(
    uid="crew-17@gw.example.org",
    sequence=0,
    summary="Crew call",
    start=datetime(2026, 3, 14, 19, 0, tzinfo=LISBON),
    end=datetime(2026, 3, 14, 20, 0, tzinfo=LISBON),
    tzid="Europe/Lisbon",
    organizer_email="calendar@gw.example.org",
    attendees=[Attendee("zoe@example.com", "Zoë")],
)
REQUEST = build_request(EVENT, dtstamp=DATE)


def spec(**changes: Any) -> OutgoingEmail:
    base = OutgoingEmail(
        from_address="gateway@gw.example.org",
        from_name="Serra Camp – Equipa",
        to_address="zoe@example.com",
        to_name="Zoë Ørsted, Jr.",
        subject="Chegada ao acampamento: o que trazer ☀",
        text="Olá Zoë,\n\nTraz <saco-cama> & lanterna.\nAté já!",
        idempotency_key="serra:arrival:zoe:step-2",
        date=DATE,
        in_reply_to="<CAF=inbound-1@mail.example.com>",
        references=[ROOT],
        reply_to="gateway+zoe.sig@gw.example.org",
    )
    return replace(base, **changes)


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(msg.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def content_types(msg: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in msg.walk()]


def test_plain_message_is_alternative_with_derived_html() -> None:
    msg = reparse(compose_email(spec()))
    assert content_types(msg) == ["multipart/alternative", "text/plain", "text/html"]
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content().replace("\r\n", "\n")
    assert text == "Olá Zoë,\n\nTraz <saco-cama> & lanterna.\nAté já!\n"
    assert "<p>Olá Zoë,</p>" in html.get_content()
    assert "Traz &lt;saco-cama&gt; &amp; lanterna.<br>" in html.get_content()


def test_html_is_escaped() -> None:
    assert "<script>" not in text_to_html("<script>alert(1)</script>")
    assert "&lt;script&gt;" in text_to_html("<script>alert(1)</script>")


def test_given_html_is_used() -> None:
    msg = reparse(compose_email(spec(html="<p>Hand <b>made</b></p>")))
    html = msg.get_body(("html",))
    assert html is not None and html.get_content().strip() == "<p>Hand <b>made</b></p>"


def test_non_ascii_headers_round_trip() -> None:
    msg = reparse(compose_email(spec()))
    assert msg["Subject"] == "Chegada ao acampamento: o que trazer ☀"
    assert msg["From"].addresses[0].display_name == "Serra Camp – Equipa"
    assert msg["To"].addresses[0].display_name == "Zoë Ørsted, Jr."
    assert msg["To"].addresses[0].addr_spec == "zoe@example.com"
    assert msg["Date"].datetime == DATE


def test_message_id_is_deterministic_and_whole_message_byte_identical() -> None:
    first, again = compose_email(spec()), compose_email(spec())
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] == message_id_for("serra:arrival:zoe:step-2", "x@GW.example.org")
    assert first["Message-ID"].endswith("@gw.example.org>")
    assert first.as_bytes() == again.as_bytes()
    other = compose_email(spec(idempotency_key="serra:arrival:zoe:step-3"))
    assert other["Message-ID"] != first["Message-ID"]


def test_threading_headers() -> None:
    msg = reparse(compose_email(spec()))
    assert msg["In-Reply-To"] == "<CAF=inbound-1@mail.example.com>"
    assert msg["References"].split() == [ROOT, "<CAF=inbound-1@mail.example.com>"]
    root = reparse(compose_email(spec(in_reply_to=None, references=[])))
    assert root["In-Reply-To"] is None and root["References"] is None


def test_reply_to_and_auto_submitted() -> None:
    msg = compose_email(spec())
    assert msg["Reply-To"] == "gateway+zoe.sig@gw.example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert compose_email(spec(auto_reply=True))["Auto-Submitted"] == "auto-replied"
    human = compose_email(spec(auto_generated=False))
    assert human["Auto-Submitted"] is None and human["X-Auto-Response-Suppress"] is None
    with pytest.raises(ValueError):
        compose_email(spec(auto_reply=True, in_reply_to=None))


def test_list_unsubscribe() -> None:
    https = compose_email(spec(list_unsubscribe="https://gw.example.org/u/abc"))
    assert https["List-Unsubscribe"] == "<https://gw.example.org/u/abc>"
    assert https["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto = compose_email(spec(list_unsubscribe="mailto:unsub@gw.example.org"))
    assert mailto["List-Unsubscribe"] == "<mailto:unsub@gw.example.org>"
    assert mailto["List-Unsubscribe-Post"] is None
    assert compose_email(spec())["List-Unsubscribe"] is None


def test_extra_headers_cannot_override_or_inject() -> None:
    assert compose_email(spec(extra_headers={"X-Gathering": "serra"}))["X-Gathering"] == "serra"
    with pytest.raises(ValueError):
        compose_email(spec(extra_headers={"message-id": "<x@y>"}))
    with pytest.raises(ValueError):
        compose_email(spec(extra_headers={"X-Evil": "a\r\nBcc: victim@example.org"}))
    with pytest.raises(ValueError):
        compose_email(spec(subject="hi\r\nBcc: victim@example.org"))


def test_imip_layout_and_method_agreement() -> None:
    msg = reparse(compose_email(spec(calendar=REQUEST, calendar_method="REQUEST")))
    assert content_types(msg) == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
        "application/ics",
    ]
    parts = list(msg.walk())
    inline, attached = parts[4], parts[5]
    assert inline.get_param("method") == "REQUEST"
    assert inline.get_content_charset() == "utf-8"
    assert inline.get_content_disposition() is None
    assert attached.get_content_disposition() == "attachment"
    assert attached.get_filename() == "invite.ics" and attached.get_param("name") == "invite.ics"
    for part in (inline, attached):
        ics = part.get_payload(decode=True)
        assert ics == REQUEST
        assert str(Calendar.from_ical(ics)["METHOD"]) == inline.get_param("method")


def test_imip_method_derived_and_checked() -> None:
    cancel = build_cancel(replace(EVENT, sequence=1), dtstamp=DATE)
    msg = compose_email(spec(calendar=cancel))
    [inline] = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert inline.get_param("method") == "CANCEL"
    with pytest.raises(ValueError):
        compose_email(spec(calendar=cancel, calendar_method="REQUEST"))
    no_method = REQUEST.replace(b"METHOD:REQUEST\r\n", b"")
    with pytest.raises(ValueError):
        compose_email(spec(calendar=no_method))


def test_attachments_with_non_ascii_names() -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256))
    msg = reparse(compose_email(spec(attachments=[("mapa do sítio.pdf", "application/pdf", pdf)])))
    assert content_types(msg) == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf"
    ]  # fmt: skip
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "mapa do sítio.pdf"
    assert attachment.get_payload(decode=True) == pdf


def test_wire_format_crlf_ascii_and_short_lines() -> None:
    long_text = "palavra " * 1000 + "\n" + "x" * 3000
    raw = compose_bytes(
        spec(
            subject="Ação " * 40, text=long_text, calendar=REQUEST, list_unsubscribe="https://a.b/c"
        )
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()  # no 8bit: DKIM survives relays without 8BITMIME
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998  # RFC 5322 section 2.1.1
    parsed = message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Ação " * 40  # spaces kept across encoded-word folds
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n") == long_text + "\n"
    assert b"MIME-Version" not in raw.split(b"\r\n\r\n", 1)[1]


def test_rejects_naive_date_and_bad_address() -> None:
    with pytest.raises(ValueError):
        compose_email(spec(date=datetime(2026, 3, 1, 10, 0)))
    with pytest.raises(ValueError):
        compose_email(spec(to_address="not-an-address"))


def test_dkim_signature_verifies() -> None:
    dkim = require_module("dkim")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record if name == b"gw2026._domainkey.gw.example.org." else b""

    raw = compose_bytes(spec(calendar=REQUEST, list_unsubscribe="https://gw.example.org/u/abc"))
    signed = dkim_sign(raw, selector="gw2026", domain="gw.example.org", private_key_pem=pem)
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(raw)
    assert dkim.verify(signed, dnsfunc=dns)
    assert asked == [b"gw2026._domainkey.gw.example.org."]
    header = message_from_bytes(signed, policy=default)["DKIM-Signature"]
    signed_headers = {h.strip().lower() for h in header.split("h=")[1].split(";")[0].split(":")}
    assert {"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
            "list-unsubscribe", "list-unsubscribe-post"} <= signed_headers  # fmt: skip
    assert not dkim.verify(signed.replace(b"Subject: ", b"Subject: X"), dnsfunc=dns)
    tampered = signed.replace(b"QkVHSU46VkNBTEVOREFS", b"QkVHSU46VkNBTEVOREFt", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_ascii_headers_quoted_and_folded() -> None:
    """Display names with specials are quoted, long headers fold at spaces, none too long."""
    many = [message_id_for(f"k{n}", "gateway@gw.example.org") for n in range(12)]
    raw = compose_bytes(
        spec(
            from_name='Camp "2027", crew\\one',
            to_name="Zoe Orsted",
            subject="word " * 40 + "=?not-encoded?=",
            references=many,
            attachments=[("notes.txt", "text/plain", b"hi")],
        )
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    msg = message_from_bytes(raw, policy=default)
    assert msg["From"].addresses[0].display_name == 'Camp "2027", crew\\one'
    assert str(msg["To"]) == "Zoe Orsted <zoe@example.com>"
    assert msg["Subject"] == "word " * 40 + "=?not-encoded?="
    assert msg["References"].split() == [*many, "<CAF=inbound-1@mail.example.com>"]
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "notes.txt" and attachment.get_content() == "hi"
    with pytest.raises(ValueError):
        compose_bytes(spec(attachments=[("x", "text/plain\r\nBcc: v@example.org", b"")]))
    with pytest.raises(ValueError):
        compose_bytes(spec(in_reply_to="<a@b>\r\nBcc: victim@example.org"))


def test_body_line_breaks_are_only_cr_and_lf() -> None:
    """U+2028, form feeds and NEL stay in the text: only CR/LF end a line (as in MIME)."""
    text = "one\u2028two\x0cthree\x85four Å\nlast\ttab"
    msg = message_from_bytes(compose_bytes(spec(text=text, html="<p>x</p>")), policy=default)
    assert isinstance(msg, EmailMessage)
    plain = msg.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == text + "\n"
    ascii_controls = compose_bytes(spec(text="bell\x07here", html="<p>x</p>"))
    assert b"Content-Transfer-Encoding: quoted-printable" in ascii_controls


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=150, deadline=None)
@given(text=_TEXT, subject=_TEXT.map(lambda s: s.replace("\r", " ").replace("\n", " ")), name=_TEXT)
def test_any_text_subject_and_name_survive_the_wire(text: str, subject: str, name: str) -> None:
    """Whatever people and organisers write comes out of a standard parser unchanged."""
    raw = compose_bytes(spec(text=text, subject=subject, to_name=name, calendar=REQUEST))
    assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    plain = msg.get_body(("plain",))
    assert plain is not None
    expected = "".join(line + "\n" for line in re.split(r"\r\n|\r|\n", text))
    expected = expected[:-1] if text == "" or re.search(r"(\r\n|\r|\n)$", text) else expected
    assert plain.get_content().replace("\r\n", "\n") == (expected if text else "")
    assert " ".join(str(msg["Subject"]).split()) == " ".join(subject.split())
    assert msg["To"].addresses[0].addr_spec == "zoe@example.com"
    written = " ".join(name.split())
    if written.isascii() and written.isprintable():
        assert msg["To"].addresses[0].display_name == written
    else:  # Python's address parser keeps the space between encoded-words (RFC 2047 6.2)
        phrase = raw.split(b"\r\nTo: ", 1)[1].split(b" <zoe@example.com>")[0].decode()
        assert str(make_header(decode_header(phrase))) == written

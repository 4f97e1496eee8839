"""Table-driven tests of parse_email over the raw mail corpus in tests/fixtures/email.

Each ``NAME.eml`` has a ``NAME.expected.json`` beside it; only the keys present there are
checked, so a fixture states exactly what it is about.
"""

from __future__ import annotations

import json
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.email.codec import ParsedEmail, parse_email
from gateway.channels.email.reply_extract import normalise

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"
OWN = frozenset({"camp@example.org"})
CASES = sorted(p.stem for p in FIXTURES.glob("*.eml"))


def _actual(parsed: ParsedEmail, key: str) -> Any:
    calendar, bounce = parsed.calendar, parsed.bounce
    derived: dict[str, Any] = {
        "answers": {str(k): v for k, v in parsed.answers.items()},
        "partstat": calendar.partstat if calendar else None,
        "uid": calendar.uid if calendar else None,
        "attendee": calendar.attendee if calendar else None,
        "organizer": calendar.organizer if calendar else None,
        "sequence": calendar.sequence if calendar else None,
        "recurrence_id": calendar.recurrence_id if calendar else None,
        "bounce_recipients": list(bounce.recipients) if bounce else None,
        "bounce_status": bounce.status if bounce else None,
        "permanent": bounce.permanent if bounce else None,
        "original_message_id": bounce.original_message_id if bounce else None,
    }
    return derived[key] if key in derived else getattr(parsed, key)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert all((FIXTURES / f"{name}.expected.json").exists() for name in CASES)


@pytest.mark.parametrize("name", CASES)
def test_fixture(name: str) -> None:
    raw = (FIXTURES / f"{name}.eml").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text(encoding="utf-8"))
    parsed = parse_email(raw, own_addresses=OWN, question_count=3)
    for key, want in expected.items():
        got = _actual(parsed, key)
        if key == "text":
            got, want = normalise(got), normalise(want)
        assert got == want, f"{name}: {key}: {got!r} != {want!r}\n(kind={parsed.kind})"
    if parsed.kind in ("auto_reply", "bounce", "calendar_reply", "rejected"):
        assert parsed.answers == {}, "machine-sent mail never yields answers"
    if parsed.kind == "rejected":
        assert parsed.reason


def _mail(body: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Maya <maya@example.net>")
    msg["To"] = headers.pop("To", "camp@example.org")
    msg["Subject"] = headers.pop("Subject", "Re: questions")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return bytes(msg)


def test_headers_are_normalised() -> None:
    raw = (FIXTURES / "gmail_en.eml").read_bytes()
    parsed = parse_email(raw, own_addresses={"CAMP@example.org"})
    assert parsed.kind == "reply"
    assert parsed.message_id == "<CAB1x@mail.gmail.com>"
    assert parsed.in_reply_to == parsed.references[0] == "<gg.7k.reg.1@example.org>"
    assert parsed.to_addresses == ("camp+7k.reg.mfrgg2lbnrxgk3dp@example.org",)
    assert isinstance(parsed.date, datetime) and parsed.date.utcoffset() is not None
    assert parsed.from_name == "Maya Keller"
    assert "gmail_quote" not in parsed.full_text and "> 1. Which diet?" in parsed.full_text


def test_token_only_from_our_own_addresses() -> None:
    raw = _mail("hi", To="other+abc@elsewhere.example, camp+XyZ.1@example.org")
    assert parse_email(raw, own_addresses={"camp@example.org"}).token == "xyz.1"
    assert parse_email(raw, own_addresses={"team@example.org"}).token is None


def test_token_alone_makes_a_reply() -> None:
    raw = _mail("vegan", To="camp+abc@example.org")
    assert parse_email(raw, own_addresses=OWN).kind == "reply"
    assert parse_email(_mail("vegan"), own_addresses=OWN).kind == "new"


def test_question_count_bounds_answers() -> None:
    raw = _mail("1. vegan\n2. 3\n7. not a question", In_Reply_To="<a@b>")
    assert parse_email(raw, own_addresses=OWN, question_count=2).answers == {1: "vegan", 2: "3"}
    assert parse_email(raw, own_addresses=OWN).answers == {1: "vegan", 2: "3", 7: "not a question"}


def test_times_are_not_numbered_answers() -> None:
    raw = _mail("10:30 works for me\n1.5 hours is fine", In_Reply_To="<a@b>")
    assert parse_email(raw, own_addresses=OWN).answers == {}


def test_huge_attachment_is_never_decoded() -> None:
    msg = EmailMessage()
    msg["From"] = "maya@example.net"
    msg["To"] = "camp@example.org"
    msg["Subject"] = "photos"
    msg.set_content("see attached")
    msg.add_attachment(
        b"\0" * (50 * 1024 * 1024),
        maintype="application",
        subtype="octet-stream",
        filename="big.bin",
    )
    parsed = parse_email(bytes(msg), own_addresses=OWN)
    assert parsed.kind == "new" and parsed.text == "see attached"
    assert parsed.attachments_skipped == 1


def test_oversized_calendar_is_skipped() -> None:
    raw = (FIXTURES / "cal_alias_attendee.eml").read_bytes()
    assert parse_email(raw, own_addresses=OWN, max_attachment_bytes=100).kind != "calendar_reply"


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n", b"\xff" * 100, b"From: \r\n\r\n", b"Subject: x\r\n\r\nbody"],
)
def test_unusable_input_is_rejected_with_a_reason(raw: bytes) -> None:
    parsed = parse_email(raw, own_addresses=OWN)
    assert parsed.kind == "rejected" and parsed.reason


def test_bounce_to_a_tagged_return_path_keeps_the_token() -> None:
    raw = (FIXTURES / "bounce_postfix.eml").read_bytes()
    raw = raw.replace(b"To: camp@example.org", b"To: camp+1.reg.abc@example.org", 1)
    parsed = parse_email(raw, own_addresses=OWN)
    assert parsed.kind == "bounce" and parsed.token == "1.reg.abc"


def _calendar_mail(ics: str, sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "camp@example.org"
    msg["Subject"] = "Accepted: Spring Camp"
    msg.set_content("")
    msg.add_attachment(
        ics.replace("\n", "\r\n").encode(),
        maintype="text",
        subtype="calendar",
        filename="reply.ics",
    )
    return bytes(msg)


_REPLY_ICS = """BEGIN:VCALENDAR
VERSION:2.0
{method}BEGIN:VEVENT
UID:7kq2m1s9d0f3camp2026@example.org
DTSTAMP:20260303T094501Z
SEQUENCE:1
{attendees}END:VEVENT
END:VCALENDAR
"""


def test_calendar_reply_with_several_attendees_names_the_sender() -> None:
    attendees = (
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:ana@example.org\n"
        "ATTENDEE;PARTSTAT=DECLINED:mailto:li@example.net\n"
    )
    ics = _REPLY_ICS.format(method="METHOD:REPLY\n", attendees=attendees)
    parsed = parse_email(_calendar_mail(ics, "Li <LI@example.net>"), own_addresses=OWN)
    assert parsed.kind == "calendar_reply" and parsed.calendar is not None
    assert (parsed.calendar.attendee, parsed.calendar.partstat) == ("li@example.net", "DECLINED")
    # Neither attendee sent it and both answered: whose answer it is cannot be told.
    parsed = parse_email(_calendar_mail(ics, "tom@example.com"), own_addresses=OWN)
    assert parsed.kind != "calendar_reply" and parsed.calendar is None


def test_calendar_reply_without_method() -> None:
    """Some Outlook versions leave METHOD out: one event, one ATTENDEE with PARTSTAT."""
    attendees = "ATTENDEE;PARTSTAT=ACCEPTED:mailto:peter.smith@contoso.example\n"
    ics = _REPLY_ICS.format(method="", attendees=attendees)
    parsed = parse_email(_calendar_mail(ics, "peter.smith@contoso.example"), own_addresses=OWN)
    assert parsed.kind == "calendar_reply" and parsed.calendar is not None
    assert (parsed.calendar.partstat, parsed.calendar.sequence) == ("ACCEPTED", 1)
    no_partstat = ics.replace("PARTSTAT=ACCEPTED:", "")
    parsed = parse_email(
        _calendar_mail(no_partstat, "peter.smith@contoso.example"), own_addresses=OWN
    )
    assert parsed.kind != "calendar_reply"

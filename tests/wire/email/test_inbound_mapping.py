"""Parsed mail → InboundMessage: token routing, authentication, kinds, and `mail inspect`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.channels.email.inbound import (
    conversation_index,
    conversation_slug,
    inspect_email,
    parse_raw,
    to_inbound,
    token_maker,
)
from gateway.channels.email.token import reply_address
from gateway.model import InboundKind, PersonId, Target
from tests.kit import email as kit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "email"
SETTINGS = kit.settings("camp@example.org", smtp_port=25)
INDEX = conversation_index([("camp", "signup"), ("camp", "crews")])


def mail(to: str, body: str = "1. Ana\n2. Vegan\n", **headers: str) -> bytes:
    head = {
        "From": "Ana <ana@example.net>",
        "To": to,
        "Subject": "Re: Camp 2027",
        "Message-ID": "<r1@example.net>",
        **headers,
    }
    return ("".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n" + body).encode()


def inbound(raw: bytes):  # type: ignore[no-untyped-def]
    return to_inbound(parse_raw(raw, SETTINGS), SETTINGS, raw=raw, conversations=INDEX)


def test_a_signed_reply_address_names_the_run_and_person() -> None:
    token = token_maker(SETTINGS)(PersonId(42), "camp/signup")
    message = inbound(mail(reply_address(SETTINGS.address, token)))
    assert message.kind == InboundKind.TEXT
    assert message.target == Target("camp", "signup", PersonId(42))
    assert message.sender is not None and message.sender.address == "ana@example.net"
    assert message.external_id == "<r1@example.net>"
    assert message.answers == {1: "Ana", 2: "Vegan"}


def test_token_conversation_fits_the_local_part_and_is_distinct() -> None:
    slugs = {conversation_slug("camp", f) for f in ("signup", "crews", "travel", "debrief")}
    assert len(slugs) == 4
    token = token_maker(SETTINGS)(PersonId(10**9), "a-very-long-gathering-slug/registration")
    assert len(reply_address(SETTINGS.address, token).partition("@")[0]) <= 64


def test_a_forged_token_is_ignored_and_in_reply_to_routes_instead() -> None:
    token = token_maker(SETTINGS)(PersonId(42), "camp/signup")
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    raw = mail(
        f"camp+{forged}@example.org",
        **{
            "In-Reply-To": "<x@elsewhere.net>",
            "References": "<root@example.org> <abc@example.org> <x@elsewhere.net>",
        },
    )
    message = inbound(raw)
    assert message.target is None
    # The most recent of *our* Message-IDs, which the engine matches against the outbox.
    assert message.in_reply_to == "<abc@example.org>"
    assert inspect_email(raw, SETTINGS, conversations=INDEX)["token"] == "invalid"


def test_a_genuine_token_of_an_unknown_conversation_gives_no_target() -> None:
    token = token_maker(SETTINGS)(PersonId(3), "gone/signup")
    assert inbound(mail(f"camp+{token}@example.org")).target is None


def test_dmarc_failure_is_rejected_without_answering_the_possibly_forged_sender() -> None:
    raw = (FIXTURES / "auth_dmarc_fail.eml").read_bytes()
    message = inbound(raw)
    assert message.kind == InboundKind.REJECTED
    assert message.sender is None and message.target is None
    assert "authentication failed" in message.text


@pytest.mark.parametrize(
    "sender", ["camp@example.org", "CAMP+x7Kq2@example.org", "camp+anything@Example.ORG"]
)
def test_mail_from_our_own_address_is_never_answered(sender: str) -> None:
    """Mail from our plus addresses (a loop, or a forgery) created a person and got a form."""
    message = inbound(mail("camp@example.org", From=sender))
    assert message.kind == InboundKind.REJECTED and message.sender is None


def test_a_neighbour_address_is_a_person() -> None:
    message = inbound(mail("camp@example.org", From="campus+x@example.org"))
    assert message.kind == InboundKind.TEXT and message.sender is not None


def test_auto_reply_bounce_and_calendar_reply_kinds() -> None:
    auto = inbound((FIXTURES / "auto_outlook_en.eml").read_bytes())
    assert auto.kind == InboundKind.AUTO_REPLY and auto.target is None
    bounce = inbound((FIXTURES / "bounce_postfix.eml").read_bytes())
    assert bounce.kind == InboundKind.BOUNCE and bounce.sender is None
    assert bounce.payload["failed"] == ["anna@nowhere.example"]
    assert bounce.payload["permanent"] is True
    cal = inbound((FIXTURES / "cal_google_accept.eml").read_bytes())
    assert cal.kind == InboundKind.CALENDAR_REPLY and cal.calendar is not None
    assert (
        cal.calendar.uid,
        cal.calendar.partstat,
        cal.calendar.sequence,
        cal.calendar.attendee,
    ) == ("7kq2m1s9d0f3camp2026@example.org", "ACCEPTED", 1, "maya.keller@gmail.com")


def test_unreadable_mail_is_rejected_with_a_reason_and_a_content_hash_id() -> None:
    garbage = inbound(b"\x00\x01garbage")
    assert garbage.kind == InboundKind.REJECTED and garbage.text
    assert garbage.external_id.startswith("sha256:")


def test_inspect_reports_json_for_every_fixture() -> None:
    for path in sorted(FIXTURES.glob("*.eml")):
        report = inspect_email(path.read_bytes(), SETTINGS, conversations=INDEX)
        json.dumps(report)
        assert report["kind"] in {k.value for k in InboundKind}, path.name
        assert report["routing"], path.name
    cal = inspect_email((FIXTURES / "cal_google_accept.eml").read_bytes(), SETTINGS)
    assert cal["calendar"]["partstat"] == "ACCEPTED"
    assert "invite uid" in cal["routing"]


def test_only_our_servers_authentication_results_count_when_its_authserv_id_is_set() -> None:
    """A sender can write its own Authentication-Results; with `authserv_id` configured only
    the top header from our server is read."""
    raw = (FIXTURES / "auth_dmarc_fail.eml").read_bytes()
    top = raw.split(b"Authentication-Results:", 1)[1].split(b";", 1)[0].split()[0].decode()
    ours = SETTINGS.model_copy(update={"authserv_id": top})
    assert to_inbound(parse_raw(raw, ours), ours, raw=raw).kind == InboundKind.REJECTED
    other = SETTINGS.model_copy(update={"authserv_id": "mx.camp.example"})
    reading = to_inbound(parse_raw(raw, other), other, raw=raw)
    assert reading.kind != InboundKind.REJECTED  # a verdict from a server not ours is ignored


def test_a_mail_starting_with_a_command_is_one_with_its_sender_as_caller() -> None:
    message = inbound(mail(SETTINGS.address, "!status\n\n-- \nRosa\n", Subject="status"))
    assert message.kind == InboundKind.COMMAND and message.text.startswith("!status")
    assert message.caller is not None and message.caller.address == "ana@example.net"


def test_a_command_in_the_subject_keeps_the_body_with_it() -> None:
    """ "!announce camp" as the subject and the announcement as the body: both reach the
    router; were the sender no organiser, the body is still what they said."""
    message = inbound(mail(SETTINGS.address, "Bring warm boots.\n", Subject="!announce camp"))
    assert message.kind == InboundKind.COMMAND
    assert message.text == "!announce camp\nBring warm boots."
    assert message.meta["command_in"] == "subject"


def test_a_reply_in_a_participants_conversation_is_never_a_command() -> None:
    token = token_maker(SETTINGS)(PersonId(42), "camp/signup")
    message = inbound(mail(reply_address(SETTINGS.address, token), "!status please\n"))
    assert message.kind == InboundKind.TEXT and message.target is not None

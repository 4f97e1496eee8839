"""EmailTransport against a real SMTP server (aiosmtpd on loopback): headers, iMIP, pool,
failures, groups, and the outbox worker's retry/dead handling of SMTP replies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from gateway.channels.email.compose import message_id_for
from gateway.channels.email.inbound import conversation_index, token_maker
from gateway.channels.email.send import EmailTransport
from gateway.channels.email.token import token_from_address, verify_token
from gateway.model import Channel, Invite, OutboxItem, OutKind, PersonId
from gateway.ports import PermanentError, TransientError
from tests.kit import email as kit
from tests.kit.engine import Clock, text
from tests.kit.outbox import outbox_item
from tests.servers import SmtpSink

GATEWAY = "camp@example.test"
INVITE = Invite(
    uid="u1@example.test",
    sequence=2,
    method="REQUEST",
    summary="Camp",
    start=datetime(2027, 7, 1, 16, tzinfo=UTC),
    end=datetime(2027, 7, 5, 12, tzinfo=UTC),
    tzid="Europe/Lisbon",
)


def item(**changes: Any) -> OutboxItem:
    base: dict[str, Any] = dict(
        idempotency_key="email:<q1@example.net>#0",
        channel=Channel.EMAIL,
        address="ana@example.net",
        person=PersonId(7),
        gathering="camp",
        flow="signup",
        subject="Camp 2027",
        text="Hello Ana",
        html="<p>Hello Ana</p>",
    )
    base.update(changes)
    return outbox_item(**base)


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def transport(sink: SmtpSink, **kw: int) -> EmailTransport:
    return EmailTransport(kit.settings(GATEWAY, smtp_port=sink.port, **kw))


async def test_invite_announcement_headers_and_imip(smtp_sink: SmtpSink) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port)
    token = token_maker(email)(PersonId(7), "camp/signup")
    t = EmailTransport(email)
    sent = item(
        invite=INVITE,
        is_reply=False,
        in_reply_to="<p1@example.net>",
        thread_root="email:<first@example.net>#0",
        reply_token=token,
    )
    message_id = await t.send(sent)
    await t.close()
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ["ana@example.net"] and received.mail_from == GATEWAY
    msg = parsed(received.data)
    assert message_id == msg["Message-ID"] == message_id_for(sent.idempotency_key, GATEWAY)
    root = message_id_for("email:<first@example.net>#0", GATEWAY)
    assert msg["In-Reply-To"] == "<p1@example.net>"
    assert msg["References"].split() == [root, "<p1@example.net>"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe"].startswith("<mailto:camp+")
    found = token_from_address(str(msg["Reply-To"]), {GATEWAY})
    assert found is not None
    claims = verify_token(b"test-token-secret", found)
    assert claims is not None and claims.person_id == 7
    assert conversation_index([("camp", "signup")])[claims.conversation] == ("camp", "signup")
    inline = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    attached = [p for p in msg.walk() if p.get_filename() == "invite.ics"]
    assert len(inline) == 1 and len(attached) == 1
    assert inline[0].get_param("method") == "REQUEST"
    event = Calendar.from_ical(inline[0].get_payload(decode=True)).walk("VEVENT")[0]
    assert str(event["ORGANIZER"]) == f"mailto:{GATEWAY}"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:ana@example.net" and attendee.params["RSVP"] == "TRUE"
    assert int(event["SEQUENCE"]) == 2


async def test_an_answer_is_not_auto_submitted_and_threads_under_the_root(
    smtp_sink: SmtpSink,
) -> None:
    t = transport(smtp_sink)
    await t.send(item(thread_root="email:<first@example.net>#0"))
    await t.close()
    msg = parsed(smtp_sink.messages[0].data)
    root = message_id_for("email:<first@example.net>#0", GATEWAY)
    assert msg["Auto-Submitted"] is None and msg["List-Unsubscribe"] is None
    assert msg["In-Reply-To"] == root and msg["References"] == root


async def test_resend_after_a_crash_carries_the_same_message_id(smtp_sink: SmtpSink) -> None:
    first, second = transport(smtp_sink), transport(smtp_sink)
    assert await first.send(item()) == await second.send(item(attempts=2))
    ids = {parsed(m.data)["Message-ID"] for m in smtp_sink.messages}
    assert len(smtp_sink.messages) == 2 and len(ids) == 1
    await first.close()
    await second.close()


async def test_connections_are_reused_and_a_dropped_one_is_replaced(smtp_sink: SmtpSink) -> None:
    t = transport(smtp_sink, max_connections=1)
    for n in range(5):
        await t.send(item(idempotency_key=f"k{n}"))
    assert t.pool.connects == 1
    port = smtp_sink.port
    await smtp_sink.stop()  # the server goes away and drops the idle connection
    async with SmtpSink(port=port) as again:
        await t.send(item(idempotency_key="after-drop"))
        assert len(again.messages) == 1
    assert t.pool.connects == 2
    await t.close()


async def test_connection_refused_is_transient() -> None:
    async with SmtpSink() as sink:
        port = sink.port
    t = EmailTransport(kit.settings(GATEWAY, smtp_port=port))
    with pytest.raises(TransientError):
        await t.send(item())


@pytest.mark.parametrize(
    ("code", "stage", "error"),
    [
        (451, "DATA", TransientError),
        (421, "MAIL", TransientError),
        (452, "RCPT", TransientError),
        (550, "DATA", PermanentError),
        (553, "MAIL", PermanentError),
        (550, "RCPT", PermanentError),
    ],
)
async def test_smtp_replies_map_to_transient_or_permanent(
    smtp_sink: SmtpSink,
    code: int,
    stage: str,
    error: type[Exception],
) -> None:
    t = transport(smtp_sink)
    smtp_sink.fail_next(1, code, stage=stage)
    with pytest.raises(error):
        await t.send(item())
    await t.send(item(idempotency_key="next"))  # the connection (or a new one) still works
    assert len(smtp_sink.messages) == 1
    await t.close()


async def test_group_mail_one_private_copy_per_member_same_thread(smtp_sink: SmtpSink) -> None:
    members = ("a@example.net", "b@example.net", "c@example.net")
    group = item(
        kind=OutKind.GROUP,
        address="crew-1",
        person=None,
        group_addresses=members,
        is_reply=False,
    )
    t = transport(smtp_sink)
    smtp_sink.fail_next(1, 452, stage="RCPT")  # a's server is busy: retry a only
    with pytest.raises(TransientError):
        await t.send(group)
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["b@example.net"], ["c@example.net"]]
    message_id = await t.send(group)
    copies = sorted(smtp_sink.messages, key=lambda m: m.rcpt_tos)
    assert [m.rcpt_tos[0] for m in copies] == list(members)
    for copy, member in zip(copies, members, strict=True):
        msg = parsed(copy.data)
        assert msg["Message-ID"] == message_id and msg["To"] == member
        others = [m for m in members if m != member]
        assert not any(o.encode() in copy.data for o in others)
    smtp_sink.fail_next(3, 550, stage="RCPT")
    with pytest.raises(PermanentError):
        await t.send(item(kind=OutKind.GROUP, idempotency_key="g2", group_addresses=members))
    await t.close()


async def test_outbox_retries_4xx_and_buries_5xx(smtp_sink: SmtpSink, tmp_path: Path) -> None:
    clock = Clock()
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t", clock) as gw:
        await gw.engine.handle(text("ana@example.net", "hello", external_id="<h1@x>"))
        await gw.engine.handle(text("bo@example.net", "hello", external_id="<h2@x>"))
        smtp_sink.fail_next(1, 451)  # ana's questions: try again later
        smtp_sink.fail_next(1, 550)  # bo's: refused for good
        assert await gw.outbox.run_once() == 2
        rows = await gw.rows("SELECT address, status, attempts, last_error FROM outbox ORDER BY id")
        assert [(r["address"], r["status"]) for r in rows] == [
            ("ana@example.net", "pending"),
            ("bo@example.net", "dead"),
        ]
        assert "451" in rows[0]["last_error"] and "550" in rows[1]["last_error"]
        clock.advance(hours=1)
        assert await gw.send_all() == 1
        row = (
            await gw.rows(
                "SELECT status, external_id FROM outbox WHERE address = ?", ("ana@example.net",)
            )
        )[0]
        assert row["status"] == "sent"
        assert row["external_id"] == parsed(smtp_sink.messages[-1].data)["Message-ID"]
        assert len(smtp_sink.messages) == 1


def test_a_resend_of_the_same_row_is_the_same_bytes() -> None:
    """After a crash the outbox sends a row again; dated by the row, not by the clock, the
    mail (and its invite's DTSTAMP) is byte for byte the one the receiver may already have."""
    clock = Clock(datetime(2027, 1, 20, 9, 0, tzinfo=UTC))
    t = EmailTransport(kit.settings(GATEWAY, smtp_port=1), clock=clock)
    row = item(invite=INVITE, created_at=datetime(2027, 1, 20, 8, 59, tzinfo=UTC))
    first = t.render(row, row.address)
    clock.advance(hours=3)
    assert t.render(row, row.address) == first
    assert parsed(first)["Date"].datetime == datetime(2027, 1, 20, 8, 59, tzinfo=UTC)


async def test_sends_are_paced_by_the_configured_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rate_per_second` spaces sends across all connections: with the clock standing still,
    each further send waits one more interval (a provider's quota is never exceeded)."""
    from gateway.channels.email import send as email_out
    from gateway.channels.email.send import SmtpPool

    settings = kit.settings(GATEWAY, smtp_port=1).smtp.model_copy(update={"rate_per_second": 10})
    pool = SmtpPool(settings, local_hostname="example.test")
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: 100.0)
    monkeypatch.setattr(email_out.asyncio, "sleep", record)
    for _ in range(5):
        await pool._pace()
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4])


async def test_mail_is_dkim_signed_when_configured(smtp_sink: SmtpSink) -> None:
    """With `[email.dkim]`, what reaches the server carries a signature that verifies."""
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.config import DkimSettings, Secret

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port).model_copy(
        update={
            "dkim": DkimSettings(
                selector="gw", domain="example.test", private_key=Secret(value=pem)
            )
        }
    )
    t = EmailTransport(email)
    await t.send(item(invite=INVITE))
    await t.close()
    [received] = smtp_sink.messages

    def dns(name: bytes, timeout: int = 5) -> bytes:
        if name == b"gw._domainkey.example.test.":
            return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        return b""

    assert received.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(received.data, dnsfunc=dns)


async def test_a_reply_to_an_internationalised_domain_is_delivered(smtp_sink: SmtpSink) -> None:
    """Addresses with IDN domains were accepted in, but every reply to them went dead."""
    t = transport(smtp_sink)
    await t.send(item(address="zoe@bücher.example"))
    await t.close()
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ["zoe@xn--bcher-kva.example"]
    assert parsed(received.data)["To"].endswith("zoe@xn--bcher-kva.example")

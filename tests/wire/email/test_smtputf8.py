"""Replies to addresses with a non-ASCII or quoted local part.

`jörg@example.de` can only be written with SMTPUTF8 (RFC 6531): it is sent so when the
server offers it, and is given up at once, with the organisers told why, when it does not.
`"john smith"@example.org` is plain ASCII and goes through any server.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from gateway.model import Identity
from tests.kit import email as kit
from tests.servers import PostfixServer, SmtpSink

GATEWAY = "camp@example.test"
ORGANISER = Identity.email("mo@example.org", "Mo")
JOERG = "jörg@example.de"
JOHN = '"john smith"@example.org'


def hello(sender: str, n: int) -> bytes:
    return (
        f"From: {sender}\r\nTo: {GATEWAY}\r\nSubject: Camp\r\nMessage-ID: <hello-{n}@x.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    ).encode()


def plain_text(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


async def replies(gw: kit.Gateway, *senders: str) -> list[dict[str, str]]:
    for n, sender in enumerate(senders):
        await gw.intake.accept(hello(sender, n))
    await gw.send_all()
    rows = await gw.rows("SELECT address, status, last_error FROM outbox ORDER BY id")
    return [dict(r) for r in rows]


async def test_replies_go_out_with_smtputf8_when_offered(tmp_path: Path) -> None:
    async with SmtpSink(smtputf8=True) as sink:
        email = kit.settings(GATEWAY, smtp_port=sink.port)
        async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
            rows = await replies(gw, JOERG, JOHN)
        assert [(r["address"], r["status"]) for r in rows] == [(JOERG, "sent"), (JOHN, "sent")]
        by_rcpt = {m.rcpt_tos[0]: m for m in sink.messages}
        assert "SMTPUTF8" in by_rcpt[JOERG].mail_options
        assert f"\r\nTo: {JOERG}\r\n".encode() in by_rcpt[JOERG].data
        # The quoted one needs nothing special: plain ASCII, quoted as it came.
        assert "SMTPUTF8" not in by_rcpt[JOHN].mail_options
        assert f"\r\nTo: {JOHN}\r\n".encode() in by_rcpt[JOHN].data


async def test_without_smtputf8_the_reply_is_given_up_and_organisers_told(
    tmp_path: Path,
) -> None:
    async with SmtpSink(smtputf8=False) as sink:
        email = kit.settings(GATEWAY, smtp_port=sink.port)
        async with kit.gateway(
            tmp_path / "gw.db", email, tmp_path / "t", organisers=(ORGANISER,)
        ) as gw:
            # As the service wires it: a dead message is reported to the organisers.
            gw.outbox.alert = gw.engine.enqueue_alert_in
            rows = await replies(gw, JOERG, JOHN)
        by_address = {r["address"]: r for r in rows}
        assert by_address[JOERG]["status"] == "dead"
        assert "does not offer SMTPUTF8" in by_address[JOERG]["last_error"]
        assert by_address[JOHN]["status"] == "sent"
        assert by_address[ORGANISER.address]["status"] == "sent"
        [alert] = [m for m in sink.messages if m.rcpt_tos == [ORGANISER.address]]
        text = plain_text(alert.data)
        assert JOERG in text and "does not offer SMTPUTF8" in text
        assert [m.rcpt_tos for m in sink.messages if m.rcpt_tos != [ORGANISER.address]] == [[JOHN]]


def maillog(postfix: PostfixServer) -> str:
    return postfix.log_path.read_text(errors="replace") if postfix.log_path.exists() else ""


async def test_postfix_takes_both_addresses(postfix: PostfixServer, tmp_path: Path) -> None:
    """Postfix (smtputf8_enable = yes) accepts both replies; example.test is relayed on."""
    joerg, john = "jörg@example.test", '"john smith"@example.test'
    email = kit.settings(GATEWAY, smtp_port=postfix.smtp_port)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        rows = await replies(gw, joerg, john)
    assert [(r["address"], r["status"]) for r in rows] == [(joerg, "sent"), (john, "sent")]
    deadline = time.monotonic() + 10
    while not all(f"to=<{a}>" in maillog(postfix) for a in (joerg, john)):
        assert time.monotonic() < deadline, maillog(postfix)[-2000:]
        await asyncio.sleep(0.05)


def test_smtplib_check_of_the_sink_knob() -> None:
    """The sink without SMTPUTF8 really does not offer it (else the test above proves little)."""

    async def offered(flag: bool) -> bool:
        async with SmtpSink(smtputf8=flag) as sink:

            def ehlo() -> bool:
                with smtplib.SMTP(sink.host, sink.port, timeout=10) as conn:
                    conn.ehlo()
                    return conn.has_extn("smtputf8")

            return await asyncio.to_thread(ehlo)

    assert asyncio.run(offered(True)) and not asyncio.run(offered(False))

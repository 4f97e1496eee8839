"""Forged hellos cannot make the gateway mail a third party without end.

Mails "from" victim@example.net that victim never wrote arrive at the listener; each would be
answered. At most `unproven_daily_limit` answers a day go to an address that has not
replied through one of our messages; once it has, its mail is never limited.
"""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

from tests.kit import email as kit
from tests.servers import SmtpSink

GATEWAY = "camp@example.test"
VICTIM = "victim@example.net"


def forged(n: int, in_reply_to: str | None = None) -> bytes:
    thread = f"In-Reply-To: {in_reply_to}\r\n" if in_reply_to else ""
    return (
        f"From: {VICTIM}\r\nTo: {GATEWAY}\r\nSubject: hi\r\nMessage-ID: <forged-{n}@x.test>\r\n"
        f"{thread}\r\n1. Victim\r\n2. Soup\r\n"
    ).encode()


def deliver(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as conn:
        conn.sendmail(VICTIM, [GATEWAY], raw)


async def test_unproven_address_gets_at_most_the_daily_limit(
    smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="smtp")
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t", unproven_daily_limit=2) as gw:
        listener = gw.listener()
        await listener.start()
        try:
            for n in range(5):
                await asyncio.to_thread(deliver, listener.port, forged(n))
            await gw.send_all()
            assert [m.rcpt_tos for m in smtp_sink.messages] == [[VICTIM]] * 2
            notes = await gw.rows("SELECT summary FROM audit WHERE direction = 'note'")
            assert [r[0] for r in notes] == [
                "not sent (2 a day to an unproven address): test/say"
            ] * 3
            # The real owner answers one of our mails (their client's Reply): proven, so
            # their answers are answered again, beyond the limit.
            ours = await gw.rows("SELECT external_id FROM outbox WHERE status = 'sent'")
            await asyncio.to_thread(deliver, listener.port, forged(9, ours[-1][0]))
            await asyncio.to_thread(deliver, listener.port, forged(10))
        finally:
            await listener.stop()
        await gw.send_all()
        assert [m.rcpt_tos for m in smtp_sink.messages] == [[VICTIM]] * 4

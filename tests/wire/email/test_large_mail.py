"""Large mails on the listener: only `max_concurrent_large` at once, the rest retried later.

A large mail costs several times its size in memory while it arrives and is parsed, so
the listener lets only a few in at once; others are answered 451 before their data is
sent, and the MTA retries. Small mails are not held up by the large ones.
"""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

from gateway.config import ListenerSettings
from tests.kit import email as kit
from tests.servers import SmtpSink

GATEWAY = "camp@example.test"
BIG = 300_000  # over the threshold below


def mail(message_id: str, size: int = 0) -> bytes:
    filler = "".join(f"{'x' * 70}\r\n" for _ in range(size // 72))
    return (
        f"From: ana@example.net\r\nTo: {GATEWAY}\r\nSubject: Camp\r\n"
        f"Message-ID: {message_id}\r\n\r\nhello\r\n{filler}"
    ).encode()


def open_data(port: int, raw: bytes) -> tuple[smtplib.SMTP, int]:
    """MAIL (declaring the size), RCPT, DATA: the connection and DATA's reply code."""
    conn = smtplib.SMTP("127.0.0.1", port, timeout=10)
    conn.ehlo("mta.example.net")
    conn.mail("ana@example.net", [f"SIZE={len(raw)}"])
    conn.rcpt(GATEWAY)
    conn.putcmd("data")
    code, _ = conn.getreply()
    return conn, code


def finish_data(conn: smtplib.SMTP, raw: bytes) -> int:
    conn.send(raw + b".\r\n")
    code, _ = conn.getreply()
    conn.quit()
    return code


def send_whole(port: int, raw: bytes) -> int:
    conn, code = open_data(port, raw)
    if code != 354:
        conn.quit()
        return code
    return finish_data(conn, raw)


async def test_one_large_mail_at_a_time_small_ones_pass(
    smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="smtp")
    listen = ListenerSettings(
        host="127.0.0.1",
        port=0,
        protocol="smtp",
        max_concurrent_large=1,
        large_message_bytes=100_000,
    )
    email = email.model_copy(update={"listener": listen})
    first, second = mail("<big1@example.net>", BIG), mail("<big2@example.net>", BIG)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        listener = gw.listener()
        await listener.start()
        try:
            # The first large mail is admitted and is still arriving...
            conn, code = await asyncio.to_thread(open_data, listener.port, first)
            assert code == 354
            # ...so a second one must come back later, and a small one passes meanwhile.
            assert await asyncio.to_thread(send_whole, listener.port, second) == 451
            small = mail("<small@example.net>")
            assert await asyncio.to_thread(send_whole, listener.port, small) == 250
            assert await asyncio.to_thread(finish_data, conn, first) == 250
            # Its slot is free again: the retry of the second one is accepted.
            assert await asyncio.to_thread(send_whole, listener.port, second) == 250
            assert listener.large_in_flight == 0
        finally:
            await listener.stop()
        rows = await gw.rows("SELECT external_id, outcome FROM inbox ORDER BY id")
        assert [tuple(r) for r in rows] == [
            ("<small@example.net>", "applied"),
            ("<big1@example.net>", "applied"),
            ("<big2@example.net>", "applied"),
        ]


async def test_a_mail_that_declared_a_small_size_cannot_send_a_large_one(
    smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="smtp")
    listen = ListenerSettings(
        host="127.0.0.1", port=0, protocol="smtp", large_message_bytes=100_000
    )
    email = email.model_copy(update={"listener": listen})
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        listener = gw.listener()
        await listener.start()
        try:
            liar = mail("<liar@example.net>", BIG)

            def lie() -> int:
                conn, code = open_data(listener.port, mail("<liar@example.net>"))
                assert code == 354
                return finish_data(conn, liar)

            assert await asyncio.to_thread(lie) == 552
        finally:
            await listener.stop()
        assert not await gw.rows("SELECT 1 FROM inbox")

"""The IMAP reader against a real Dovecot: IDLE and polling, cursor, move, crash, outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.channels.email.inbound import token_maker
from gateway.channels.email.receive import ImapReader
from gateway.channels.email.token import reply_address
from gateway.model import PersonId
from tests.kit import email as kit
from tests.kit.engine import text
from tests.servers import DovecotServer, MailUser, SmtpSink


def reply(to: str, message_id: str, body: str = "hello", sender: str = "ana@example.net") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Camp\r\nMessage-ID: {message_id}\r\n\r\n{body}\r\n"
    ).encode()


@asynccontextmanager
async def running(reader: ImapReader) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        async with asyncio.timeout(15):
            await reader.ready.wait()
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def processed(dovecot: DovecotServer, box: MailUser, n: int) -> bool:
    return len(
        dovecot.mailbox_messages(box.address, "Processed")
    ) == n and not dovecot.mailbox_messages(box.address)


async def test_idle_applies_a_reply_then_moves_it(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(
        mailbox.address, smtp_port=smtp_sink.port, imap=(dovecot.imap_port, mailbox.password)
    )
    token = token_maker(email)(PersonId(1), f"{kit.GATHERING}/{kit.FLOW}")
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        await gw.engine.handle(text("bo@example.net", "hi", external_id="<bo@example.net>"))
        reader = gw.reader()
        async with running(reader):
            # Delivered to bo's signed plus address, as a reply to our Reply-To would be.
            await dovecot.adeliver(
                reply_address(mailbox.address, token),
                reply(mailbox.address, "<bo2@example.net>", sender="bo@example.net"),
            )
            await kit.until(lambda: processed(dovecot, mailbox, 1))
            # Ana answers with bo's token (a forwarded mail): held, bo is asked.
            await dovecot.adeliver(
                reply_address(mailbox.address, token), reply(mailbox.address, "<ana1@example.net>")
            )
            await kit.until(lambda: processed(dovecot, mailbox, 2))
        inbox = await gw.rows("SELECT external_id, outcome, detail FROM inbox ORDER BY id")
        assert [(r["external_id"], r["outcome"]) for r in inbox] == [
            ("<bo@example.net>", "applied"),
            ("<bo2@example.net>", "applied"),
            ("<ana1@example.net>", "held"),
        ]
        assert "token" in inbox[1]["detail"] or inbox[1]["detail"] == "text"
        _, state = await gw.run_state(1) or ("", {})
        assert state["seen"] == ["<bo@example.net>", "<bo2@example.net>"]
        cursor = await gw.rows("SELECT value FROM cursors WHERE name = ?", (reader.cursor_name,))
        assert cursor[0]["value"].endswith(":2")


async def test_polling_without_idle_and_exactly_once_after_a_failed_move(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(
        mailbox.address,
        smtp_port=smtp_sink.port,
        idle=False,
        poll_seconds=0.1,
        imap=(dovecot.imap_port, mailbox.password),
    )
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        reader = gw.reader()
        real_move = reader._move
        failures = []

        async def move_fails_once(imap, uid, folder):  # type: ignore[no-untyped-def]
            if not failures:
                failures.append(uid)
                raise ConnectionResetError("dropped between commit and move")
            await real_move(imap, uid, folder)

        reader._move = move_fails_once  # type: ignore[method-assign]
        async with running(reader):
            await dovecot.adeliver(mailbox.address, reply(mailbox.address, "<p1@example.net>"))
            await kit.until(lambda: processed(dovecot, mailbox, 1))
            await dovecot.adeliver(
                mailbox.address, reply(mailbox.address, "<p2@example.net>", "1. Ana\n2. Soup")
            )
            await kit.until(lambda: processed(dovecot, mailbox, 2))
        assert failures == [1]
        status, state = await gw.run_state(1) or ("", {})
        assert state["seen"] == ["<p1@example.net>", "<p2@example.net>"]
        assert status == "confirming"
        assert len(await gw.rows("SELECT 1 FROM inbox")) == 2


async def test_reader_survives_a_dovecot_outage(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(
        mailbox.address, smtp_port=smtp_sink.port, imap=(dovecot.imap_port, mailbox.password)
    )
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        reader = gw.reader()
        async with running(reader):
            await asyncio.to_thread(dovecot.kill)
            await kit.until(lambda: _not_ready(reader))
            await asyncio.to_thread(dovecot.start)
            await dovecot.adeliver(mailbox.address, reply(mailbox.address, "<after@example.net>"))
            await kit.until(lambda: processed(dovecot, mailbox, 1), limit=30)
        assert len(await gw.rows("SELECT 1 FROM inbox")) == 1


async def _not_ready(reader: ImapReader) -> bool:
    return not reader.ready.is_set()


async def test_mail_arriving_while_earlier_mail_is_applied_is_read_at_once(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    """Dovecot announces such mail in its answers to FETCH and MOVE, not to the IDLE that
    follows: without a second search it waited for the IDLE's renewal (here 10 minutes)."""
    email = kit.settings(
        mailbox.address,
        smtp_port=smtp_sink.port,
        imap=(dovecot.imap_port, mailbox.password),
        poll_seconds=600,
    )
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        reader = gw.reader()
        apply = reader._apply
        arrived: list[int] = []

        async def apply_while_another_arrives(raw: bytes, validity: str, uid: int) -> bool:
            if not arrived:
                arrived.append(uid)
                await dovecot.adeliver(mailbox.address, reply(mailbox.address, "<late@x.net>"))
            return await apply(raw, validity, uid)

        reader._apply = apply_while_another_arrives  # type: ignore[method-assign]
        async with running(reader):
            await dovecot.adeliver(mailbox.address, reply(mailbox.address, "<first@x.net>"))
            await kit.until(lambda: processed(dovecot, mailbox, 2), limit=15)
        inbox = await gw.rows("SELECT external_id FROM inbox ORDER BY id")
        assert [r["external_id"] for r in inbox] == ["<first@x.net>", "<late@x.net>"]

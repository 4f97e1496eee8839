"""Mail the gateway cannot read is never silently empty: its sender is told why.

An over-size mail in the IMAP folder is not fetched (only its header, to know whom to
tell); a mail whose text is over the codec's limit is not read as an empty answer; a mail
the parser breaks on still names its sender, who is told.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.channels.email import codec
from gateway.channels.email.receive import ImapReader
from tests.kit import email as kit
from tests.servers import DovecotServer, MailUser, SmtpSink

GATEWAY = "camp@example.test"


def mail(to: str, message_id: str, body: str, sender: str = "ana@example.net") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Camp\r\nMessage-ID: {message_id}\r\n\r\n{body}\r\n"
    ).encode()


def plain_text(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


@asynccontextmanager
async def running(reader: ImapReader) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        async with asyncio.timeout(15):
            await reader.ready.wait()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_an_over_size_imap_mail_is_not_fetched_and_its_sender_told(
    dovecot: DovecotServer, mailbox: MailUser, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    email = kit.settings(
        mailbox.address, smtp_port=smtp_sink.port, imap=(dovecot.imap_port, mailbox.password)
    )
    assert email.imap is not None
    email = email.model_copy(
        update={"imap": email.imap.model_copy(update={"max_message_bytes": 100_000})}
    )
    big = mail(mailbox.address, "<big@example.net>", "x" * 70 + "\r\n" + "y" * 200_000)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        async with running(gw.reader()):
            await dovecot.adeliver(mailbox.address, big)
            await kit.until(
                lambda: asyncio.sleep(
                    0, len(dovecot.mailbox_messages(mailbox.address, "Processed")) == 1
                )
            )
        inbox = await gw.rows("SELECT external_id, outcome, detail FROM inbox")
        assert [(r["external_id"], r["outcome"]) for r in inbox] == [
            ("<big@example.net>", "rejected")
        ]
        await gw.send_all()
    [told] = smtp_sink.messages
    assert told.rcpt_tos == ["ana@example.net"]
    text = plain_text(told.data)
    assert "could not read your message" in text and "0.2 MB, more than the 0.1 MB" in text


async def test_a_mail_whose_text_is_too_long_is_refused_not_read_as_empty(
    smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="smtp")
    pasted = "\r\n".join("z" * 76 for _ in range(codec.DEFAULT_MAX_ATTACHMENT_BYTES // 70))
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        listener = gw.listener()
        await listener.start()
        try:

            def deliver() -> None:
                with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as conn:
                    conn.sendmail("ana@example.net", [GATEWAY], mail(GATEWAY, "<long@x>", pasted))

            await asyncio.to_thread(deliver)
        finally:
            await listener.stop()
        inbox = await gw.rows("SELECT outcome FROM inbox")
        assert [r[0] for r in inbox] == ["rejected"]
        assert not await gw.rows("SELECT 1 FROM flow_runs")
        await gw.send_all()
    [told] = smtp_sink.messages
    assert told.rcpt_tos == ["ana@example.net"]
    assert "longer than the 2,000 kB we read" in plain_text(told.data)


def test_a_mail_the_parser_breaks_on_still_names_whom_to_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(raw: bytes) -> None:
        raise UnicodeDecodeError("utf-8", raw, 0, 1, "a parser bug")

    monkeypatch.setattr(codec, "_message", broken)
    raw = mail(GATEWAY, "<broken@x>", "hello")
    parsed = codec.parse_email(raw, own_addresses={GATEWAY})
    assert (parsed.kind, parsed.from_address, parsed.message_id) == (
        "rejected",
        "ana@example.net",
        "<broken@x>",
    )
    assert parsed.reason == "unreadable message (UnicodeDecodeError)"
    # A machine's mail is not answered, even when it cannot be read.
    bounce = mail(GATEWAY, "<b@x>", "failed", sender="MAILER-DAEMON@example.net")
    assert codec.parse_email(bounce, own_addresses={GATEWAY}).from_address is None
    auto = b"Auto-Submitted: auto-replied\r\n" + raw
    assert codec.parse_email(auto, own_addresses={GATEWAY}).from_address is None

"""The SMTP/LMTP listener: accepts our addresses only, answers 250 only after the commit."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.email.failures import MIGRATIONS as EMAIL_MIGRATIONS
from gateway.channels.email.failures import MailFailures
from gateway.channels.email.inbound import token_maker
from gateway.channels.email.receive import MailIntake, MailListener
from gateway.channels.email.token import reply_address
from gateway.cli.main import configure_logging
from gateway.model import InboundMessage, PersonId
from gateway.store import open_store
from tests.kit import email as kit
from tests.servers import SmtpSink

GATEWAY = "camp@example.test"


def mail(message_id: str, to: str = GATEWAY) -> bytes:
    return (
        f"From: ana@example.net\r\nTo: {to}\r\nSubject: Camp\r\n"
        f"Message-ID: {message_id}\r\n\r\nhello\r\n"
    ).encode()


def send(protocol: str, port: int, rcpts: list[str], raw: bytes) -> Any:
    client = smtplib.LMTP if protocol == "lmtp" else smtplib.SMTP
    with client("127.0.0.1", port, timeout=10) as conn:
        return conn.sendmail("ana@example.net", rcpts, raw)


@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
async def test_listener_applies_mail_for_our_addresses_only(
    protocol: str,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener=protocol)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        listener = gw.listener()
        await listener.start()
        try:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                await asyncio.to_thread(
                    send,
                    protocol,
                    listener.port,
                    ["x@example.test"],
                    mail("<no@x>", "x@example.test"),
                )
            assert refused.value.recipients["x@example.test"][0] == 550
            assert (
                await asyncio.to_thread(
                    send, protocol, listener.port, [GATEWAY], mail("<m1@example.net>")
                )
                == {}
            )
            # The envelope's plus address carries the token even when the headers do not.
            token = token_maker(email)(PersonId(1), f"{kit.GATHERING}/{kit.FLOW}")
            await asyncio.to_thread(
                send,
                protocol,
                listener.port,
                [reply_address(GATEWAY, token)],
                mail("<m2@example.net>"),
            )
        finally:
            await listener.stop()
        rows = await gw.rows("SELECT external_id, outcome, detail FROM inbox ORDER BY id")
        assert [(r["external_id"], r["outcome"]) for r in rows] == [
            ("<m1@example.net>", "applied"),
            ("<m2@example.net>", "applied"),
        ]
        assert rows[1]["detail"] == "text"  # routed by the explicit (token) target
        _, state = await gw.run_state(1) or ("", {})
        assert state["seen"] == ["<m1@example.net>", "<m2@example.net>"]


class FailingEngine:
    """An engine whose transaction fails, as with a full disk."""

    async def handle(self, message: InboundMessage, *, cursor: Any = None) -> Any:
        raise OSError("disk full")


async def test_listener_answers_4xx_when_nothing_could_be_committed(tmp_path: Path) -> None:
    email = kit.settings(GATEWAY, smtp_port=25, listener="lmtp")
    store = await open_store(tmp_path / "gw.db", migrations=EMAIL_MIGRATIONS)
    listener = MailListener(email, MailIntake(email, FailingEngine(), MailFailures(store)))
    await listener.start()
    try:
        for _ in range(4):  # an outage is not the mail's fault: never set aside
            with pytest.raises(smtplib.SMTPDataError) as failed:
                await asyncio.to_thread(send, "lmtp", listener.port, [GATEWAY], mail("<f@x>"))
            assert failed.value.smtp_code == 451
        async with store.read() as tx:
            assert not await tx.all("SELECT 1 FROM mail_failures")
    finally:
        await listener.stop()
        await store.close()


async def test_the_service_logs_no_sender_addresses_from_the_listener(
    smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    """aiosmtpd logs each envelope at INFO on "mail.log"; `gateway run` logs at INFO, so it
    keeps that logger at WARNING: a person's address is not in every log line."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    keep, level = Keep(), root.level
    root.addHandler(keep)
    try:
        configure_logging(verbose=False, running=True)
        root.setLevel(logging.INFO)  # pytest's own handler setup may have set it already
        email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="smtp")
        async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
            listener = gw.listener()
            await listener.start()
            try:
                await asyncio.to_thread(
                    send, "smtp", listener.port, [GATEWAY], mail("<m1@example.net>")
                )
            finally:
                await listener.stop()
    finally:
        root.removeHandler(keep)
        root.setLevel(level)
        logging.getLogger("mail.log").setLevel(logging.NOTSET)
    assert any(r.levelno == logging.INFO for r in records)  # INFO is on for the service
    assert not [r.getMessage() for r in records if "ana@example.net" in r.getMessage()]

"""A mail that always breaks the engine is set aside, and the mail behind it goes on.

Against a real Dovecot: the reader must move the poison mail to the shunt folder after
`max_failures` attempts, record it as rejected, tell the organisers, and keep reading. When
the engine fails on everything (its store is gone) nothing may be set aside: that is an
outage, not a bad mail.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.config import EmailSettings
from gateway.model import Identity, InboundKind, InboundMessage
from tests.kit import email as kit
from tests.servers import DovecotServer, MailUser, SmtpSink
from tests.wire.email.test_imap_reader import reply, running

ORGANISER = Identity.email("mo@example.org", "Mo")
POISON = "<poison@example.net>"


def settings(mailbox: MailUser, dovecot: DovecotServer, sink: SmtpSink) -> EmailSettings:
    email = kit.settings(
        mailbox.address, smtp_port=sink.port, imap=(dovecot.imap_port, mailbox.password)
    )
    assert email.imap is not None
    return email.model_copy(update={"imap": email.imap.model_copy(update={"max_failures": 2})})


def failing(gw: kit.Gateway, attempts: list[str], *, everything: bool) -> None:
    """Make the engine raise on the poison mail (or on every message) past the flow layer."""
    real = gw.engine.handle

    async def handle(message: InboundMessage, **kwargs: Any) -> Any:
        attempts.append(f"{message.kind.value}:{message.external_id}")
        # The rejection record takes the engine's no-flow path, which works unless
        # the engine is broken as a whole.
        broken_path = everything or message.kind != InboundKind.REJECTED
        if message.external_id == POISON and broken_path:
            raise RuntimeError("flow routing exploded")
        return await real(message, **kwargs)

    gw.engine.handle = handle  # type: ignore[method-assign]


async def test_poison_mail_is_shunted_recorded_and_reported(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = settings(mailbox, dovecot, smtp_sink)
    async with kit.gateway(
        tmp_path / "gw.db", email, tmp_path / "t", organisers=(ORGANISER,)
    ) as gw:
        attempts: list[str] = []
        failing(gw, attempts, everything=False)
        reader = gw.reader()
        await dovecot.adeliver(mailbox.address, reply(mailbox.address, POISON, "boom"))
        await dovecot.adeliver(mailbox.address, reply(mailbox.address, "<after@example.net>"))
        async with running(reader):

            async def sorted_out() -> bool:
                return (
                    len(dovecot.mailbox_messages(mailbox.address, "Gateway-Failed")) == 1
                    and len(dovecot.mailbox_messages(mailbox.address, "Processed")) == 1
                )

            await kit.until(sorted_out, limit=30)
        assert not dovecot.mailbox_messages(mailbox.address)
        assert (
            b"Message-ID: " + POISON.encode()
            in dovecot.mailbox_messages(mailbox.address, "Gateway-Failed")[0]
        )
        assert attempts[:3] == [f"text:{POISON}", f"text:{POISON}", f"rejected:{POISON}"]
        inbox = await gw.rows(
            "SELECT external_id, outcome, person_id, detail FROM inbox ORDER BY id"
        )
        assert [(r["external_id"], r["outcome"]) for r in inbox] == [
            (POISON, "rejected"),
            (f"{POISON}/set-aside", "rejected"),  # its sender is told it was not read
            ("<after@example.net>", "applied"),
        ]
        assert inbox[0]["person_id"] is None  # the record of the mail itself
        assert "RuntimeError: flow routing exploded" in inbox[0]["detail"]
        alerts = await gw.rows(
            "SELECT address, idempotency_key, payload FROM outbox WHERE address = ?",
            (ORGANISER.address,),
        )
        [alert] = alerts
        assert alert["idempotency_key"].startswith(f"mail_failed:{POISON}")
        text = json.loads(alert["payload"])["text"]
        assert "ana@example.net" in text and "Gateway-Failed" in text
        assert "flow routing exploded" in text and "2 times" in text


async def test_an_engine_that_fails_on_everything_shunts_nothing(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = settings(mailbox, dovecot, smtp_sink)
    async with kit.gateway(
        tmp_path / "gw.db", email, tmp_path / "t", organisers=(ORGANISER,)
    ) as gw:
        attempts: list[str] = []
        failing(gw, attempts, everything=True)
        reader = gw.reader()
        await dovecot.adeliver(mailbox.address, reply(mailbox.address, POISON, "boom"))
        stop = asyncio.Event()
        task = asyncio.create_task(reader.run(stop))  # never ready: every session fails

        async def tried_past_the_limit() -> bool:
            return attempts.count(f"rejected:{POISON}") >= 2

        try:
            await kit.until(tried_past_the_limit, limit=30)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
        assert len(dovecot.mailbox_messages(mailbox.address)) == 1
        assert not dovecot.mailbox_messages(mailbox.address, "Gateway-Failed")
        assert not await gw.rows("SELECT 1 FROM inbox")

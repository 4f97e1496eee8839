"""A whole registration by email, through real servers: the gateway sends through Postfix,
Postfix delivers over LMTP into Dovecot, the gateway reads its mailbox with IMAP IDLE, and
the participant answers from their own Dovecot mailbox like a mail client would."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.kit import email as kit
from tests.kit.email_participant import Participant, plain_text
from tests.servers import DovecotServer, MailUser, PostfixServer


async def test_registration_by_email_from_first_mail_to_accepted_invite(
    dovecot: DovecotServer,
    postfix: PostfixServer,
    mailbox: MailUser,
    tmp_path: Path,
) -> None:
    ana = Participant("Ana", dovecot.new_user("ana"), dovecot, postfix)
    email = kit.settings(
        mailbox.address, smtp_port=postfix.smtp_port, imap=(dovecot.imap_port, mailbox.password)
    )
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        stop = asyncio.Event()
        reader = gw.reader()
        tasks = [asyncio.create_task(reader.run(stop)), asyncio.create_task(gw.outbox.run(stop))]
        try:
            await ana.write(mailbox.address, "Joining camp", "Hi, I would like to come.")
            echo = await ana.mail(1)
            assert "echo: Hi, I would like to come." in plain_text(echo)
            await ana.reply(echo, "1. Ana Lima\n2. Vegetarian")
            confirm = await ana.mail(2)
            assert "Ana Lima" in plain_text(confirm)
            await ana.reply(confirm, "yes")
            welcome = await ana.mail(3)
            event = await ana.accept_invite(welcome)
            assert event["uid"] == kit.INVITE_UID

            async def accepted() -> bool:
                run = await gw.run_state(1)
                return run is not None and run[0] == "accepted"

            await kit.until(accepted, limit=30)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        _, state = await gw.run_state(1) or ("", {})
        assert state["attendance"] == "accepted"
        assert state["answers"] == {"1": "Ana Lima", "2": "Vegetarian"}
        # One thread per conversation: every later mail references the first, same subject.
        root = echo["Message-ID"]
        for later in (confirm, welcome):
            assert root in later["References"].split()
            assert later["Subject"].removeprefix("Re: ") == echo["Subject"]
        assert confirm["In-Reply-To"] != root  # it answers Ana's own mail
        assert welcome["Auto-Submitted"] is None  # answers to a person are not auto-generated
        inbox = await gw.rows("SELECT kind, outcome FROM inbox ORDER BY id")
        assert [(r["kind"], r["outcome"]) for r in inbox] == [
            ("text", "applied"),
            ("text", "applied"),
            ("text", "applied"),
            ("calendar_reply", "applied"),
        ]

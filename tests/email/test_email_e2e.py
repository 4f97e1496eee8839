"""A whole registration by email, through real servers: the gateway sends through Postfix,
Postfix delivers over LMTP into Dovecot, the gateway reads its mailbox with IMAP IDLE, and
the participant answers from their own Dovecot mailbox like a mail client would."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from icalendar import Calendar

from gateway.transports.email_compose import OutgoingEmail, compose_email
from tests.email import kit
from tests.servers import DovecotServer, MailUser, PostfixServer


class Participant:
    """Someone with only a mailbox: reads it on disk, answers through Postfix."""

    def __init__(self, box: MailUser, dovecot: DovecotServer, postfix: PostfixServer) -> None:
        self.box, self.dovecot, self.postfix = box, dovecot, postfix

    async def mail(self, n: int) -> EmailMessage:
        """The n-th mail (1-based) in the inbox, waiting for it to arrive."""
        async def arrived() -> bool:
            return len(self.dovecot.mailbox_messages(self.box.address)) >= n
        await kit.until(arrived, limit=30)
        message = message_from_bytes(self.dovecot.mailbox_messages(self.box.address)[n - 1],
                                     policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message

    async def send(self, raw: bytes, to: str) -> None:
        def send() -> None:
            with smtplib.SMTP(self.postfix.host, self.postfix.smtp_port, timeout=10) as smtp:
                smtp.sendmail(self.box.address, [to], raw)
        await asyncio.to_thread(send)

    async def reply(self, to: EmailMessage, body: str) -> None:
        """Answer like Gmail: to Reply-To, threaded, the quoted original below."""
        original = to.get_body(("plain",)).get_content()
        quoted = "\n".join("> " + line for line in original.splitlines())
        address = str(to["Reply-To"] or to["From"])
        raw = (f"From: Ana <{self.box.address}>\r\nTo: {address}\r\n"
               f"Subject: Re: {to['Subject']}\r\nIn-Reply-To: {to['Message-ID']}\r\n"
               f"References: {to.get('References', '')} {to['Message-ID']}\r\n"
               f"Message-ID: <{abs(hash(body))}.{len(body)}@ana.example.test>\r\n"
               f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
               f"{body}\r\n\r\nOn Monday, Camp 2027 wrote:\r\n{quoted}\r\n").encode()
        await self.send(raw, address.split("<")[-1].rstrip(">"))

    async def accept_invite(self, invite_mail: EmailMessage) -> str:
        """Press "Yes" in a calendar client: an iMIP REPLY to the ORGANIZER."""
        part = next(p for p in invite_mail.walk() if p.get_content_type() == "text/calendar")
        event = Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")[0]
        organizer = str(event["ORGANIZER"]).removeprefix("mailto:")
        ics = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Client//EN\r\nMETHOD:REPLY\r\n"
            f"BEGIN:VEVENT\r\nUID:{event['UID']}\r\nSEQUENCE:{event['SEQUENCE']}\r\n"
            "DTSTAMP:20270120T090000Z\r\n"
            f"ORGANIZER:mailto:{organizer}\r\n"
            f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{self.box.address}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n").encode()
        message = compose_email(OutgoingEmail(
            from_address=self.box.address, from_name="Ana", to_address=organizer, to_name="",
            subject="Accepted: Camp 2027", text="Ana has accepted.", date=datetime.now(UTC),
            idempotency_key="ana-accepts", calendar=ics, calendar_method="REPLY",
            auto_generated=False))
        await self.send(message.as_bytes(), organizer)
        return str(event["UID"])


async def test_registration_by_email_from_first_mail_to_accepted_invite(
    dovecot: DovecotServer, postfix: PostfixServer, mailbox: MailUser, tmp_path: Path,
) -> None:
    ana = Participant(dovecot.new_user("ana"), dovecot, postfix)
    email = kit.settings(mailbox.address, smtp_port=postfix.smtp_port,
                         imap=(dovecot.imap_port, mailbox.password))
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        stop = asyncio.Event()
        reader = gw.reader()
        tasks = [asyncio.create_task(reader.run(stop)), asyncio.create_task(gw.outbox.run(stop))]
        try:
            await ana.send((f"From: Ana <{ana.box.address}>\r\nTo: {mailbox.address}\r\n"
                            "Subject: Joining camp\r\nMessage-ID: <start@ana.example.test>\r\n\r\n"
                            "Hi, I would like to come.\r\n").encode(), mailbox.address)
            questions = await ana.mail(1)
            assert "What is your name?" in questions.get_body(("plain",)).get_content()
            await ana.reply(questions, "1. Ana Lima\n2. Vegetarian")
            confirm = await ana.mail(2)
            assert "Ana Lima" in confirm.get_body(("plain",)).get_content()
            await ana.reply(confirm, "yes")
            welcome = await ana.mail(3)
            uid = await ana.accept_invite(welcome)
            assert uid == kit.INVITE_UID

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
        root = questions["Message-ID"]
        for later in (confirm, welcome):
            assert root in later["References"].split()
            assert later["Subject"].removeprefix("Re: ") == questions["Subject"]
        assert confirm["In-Reply-To"] != root  # it answers Ana's own mail
        assert welcome["Auto-Submitted"] is None  # answers to a person are not auto-generated
        inbox = await gw.rows("SELECT kind, outcome FROM inbox ORDER BY id")
        assert [(r["kind"], r["outcome"]) for r in inbox] == [
            ("text", "applied"), ("text", "applied"), ("text", "applied"),
            ("calendar_reply", "applied")]

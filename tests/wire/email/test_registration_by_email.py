"""The real registration flow over email, run by the service as `gateway run` wires it.

Postfix relays the gateway's mail into the participant's Dovecot mailbox over LMTP, and
the participant's mail into the gateway's, which the service reads with IMAP IDLE. The
participant writes like Gmail and Google Calendar do; the outcome is read back through
the organisers' CSV export, the same way organisers would see it.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

from gateway.app.channels import build_service
from gateway.config import load_config
from gateway.ops.reports import export_csv
from tests.kit import email as kit
from tests.kit.email_participant import Participant, plain_text
from tests.kit.service import camp_toml, email_toml
from tests.servers import DovecotServer, MailUser, PostfixServer
from tests.unit.test_calendar import ical_js

CONFIG = (
    camp_toml("{email}", badge_id="name")
    + """
[[gatherings.camp.registration.questions]]
id = "notes"
type = "text"
prompt = "Anything we should know?"
required = false
"""
)


def write_config(
    folder: Path, gateway: MailUser, dovecot: DovecotServer, postfix: PostfixServer
) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        CONFIG.format(
            email=email_toml(
                gateway.address,
                gateway.password,
                smtp_port=postfix.smtp_port,
                imap_port=dovecot.imap_port,
            )
        )
    )
    return path


async def test_registration_by_email_with_inline_answers_and_calendar_accept(
    dovecot: DovecotServer,
    postfix: PostfixServer,
    mailbox: MailUser,
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, mailbox, dovecot, postfix))
    service = await build_service(config)
    engine = service.engine
    running = asyncio.create_task(service.run())
    ana = Participant("Ana Lima", dovecot.new_user("ana"), dovecot, postfix)
    camp = config.gatherings["camp"]

    async def exported() -> dict[str, str]:
        rows = list(csv.DictReader(io.StringIO(await export_csv(engine.store, camp))))
        return rows[0] if rows else {}

    try:
        await ana.write(mailbox.address, "Camp 2027", "Hi! I would love to come to the camp.")
        form = await ana.mail(1)
        text = plain_text(form)
        assert "1. What name would you like on your badge?" in text
        assert "3. Anything we should know?" in text
        await ana.reply_inline(form, {"1. What name": "Ana L.", "2. What do you": "vegetarian"})

        summary = await ana.mail(2)
        text = plain_text(summary)
        assert "Ana L." in text and "Vegetarian" in text
        assert 'Reply "yes"' in text
        await ana.reply(summary, "Yes")

        registered = await ana.mail(3)
        assert "You're registered for Camp 2027" in plain_text(registered)
        [ics] = [
            bytes(p.get_payload(decode=True))
            for p in registered.walk()
            if p.get_content_type() == "text/calendar"
        ]
        (tmp_path / "invite.ics").write_bytes(ics)
        [read] = ical_js([tmp_path / "invite.ics"])
        assert read["method"] == "REQUEST"
        [invite] = read["events"]
        assert invite["organizer"]["email"] == mailbox.address
        assert [(a["email"], a["rsvp"]) for a in invite["attendees"]] == [(ana.box.address, "TRUE")]
        assert invite["summary"].startswith("Camp 2027")
        row = await exported()
        assert (row["status"], row["attendance"]) == ("registered", "")

        event = await ana.accept_invite(registered)
        assert event["organizer"] == mailbox.address

        async def accepted() -> bool:
            return (await exported()).get("attendance") == "accepted"

        await kit.until(accepted, limit=30)
        row = await exported()
    finally:
        service.stop.set()
        await running
    assert row["status"] == "registered"
    assert (row["answer:name"], row["answer:diet"], row["answer:notes"]) == (
        "Ana L.",
        "Vegetarian",
        "",
    )
    assert row["email"] == ana.box.address
    # Nothing was sent twice and nothing is stuck: three mails, all of them sent.
    assert len(dovecot.mailbox_messages(ana.box.address)) == 3

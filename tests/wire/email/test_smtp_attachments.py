"""Files sent with a message, through a real SMTP server (aiosmtpd on loopback), read back
with the standard library's parser: the same bytes, and an invite beside them still iMIP."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from icalendar import Calendar

from gateway.channels.email.send import EmailTransport
from gateway.model import Attachment, Invite, PersonId
from tests.kit import email as kit
from tests.kit.outbox import outbox_item
from tests.servers import SmtpSink

GATEWAY = "camp@example.test"
INVITE = Invite(
    uid="u1@example.test",
    sequence=0,
    method="REQUEST",
    summary="Camp",
    start=datetime(2027, 7, 1, 16, tzinfo=UTC),
    end=datetime(2027, 7, 5, 12, tzinfo=UTC),
    tzid="Europe/Lisbon",
)
#: Every byte value, CR and LF among them, and a name that needs RFC 2231.
FILES = (
    Attachment("packing list.pdf", "application/pdf", random.Random(7).randbytes(70_000)),
    Attachment("plan de table – été.csv", "text/csv", bytes(range(256)) * 3),
)


async def send(sink: SmtpSink, **fields: object) -> EmailMessage:
    transport = EmailTransport(kit.settings(GATEWAY, smtp_port=sink.port))
    try:
        await transport.send(
            outbox_item(
                idempotency_key="files:1",
                person=PersonId(7),
                subject="Camp 2027",
                text="Hello Ana, the files are attached.",
                attachments=FILES,
                created_at=datetime(2027, 1, 20, 9, tzinfo=UTC),
                **fields,
            )
        )
    finally:
        await transport.close()
    [received] = sink.messages
    message = message_from_bytes(received.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def files_of(message: EmailMessage) -> list[tuple[str | None, str, bytes]]:
    found = []
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        found.append((part.get_filename(), part.get_content_type(), data))
    return found


async def test_attachments_arrive_byte_for_byte_beside_the_text(smtp_sink: SmtpSink) -> None:
    message = await send(smtp_sink)
    assert message.get_content_type() == "multipart/mixed"
    first, *_ = message.iter_parts()
    assert first.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in first.iter_parts()] == ["text/plain", "text/html"]
    assert files_of(message) == [(f.name, f.mime, f.data) for f in FILES]


async def test_with_an_invite_the_mail_stays_imip_and_carries_the_files(
    smtp_sink: SmtpSink,
) -> None:
    message = await send(smtp_sink, invite=INVITE)
    assert message.get_content_type() == "multipart/mixed"
    alternative = next(message.iter_parts())
    assert isinstance(alternative, EmailMessage)
    kinds = [p.get_content_type() for p in alternative.iter_parts()]
    assert kinds == ["text/plain", "text/html", "text/calendar"]
    calendar_part = list(alternative.iter_parts())[2]
    assert calendar_part.get_param("method") == "REQUEST"
    ics = calendar_part.get_payload(decode=True)
    assert isinstance(ics, bytes)
    calendar = Calendar.from_ical(ics)
    assert str(calendar["METHOD"]) == "REQUEST"  # equal to the part's method= (RFC 6047 2.4)
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == INVITE.uid
    assert str(event["ORGANIZER"]) == f"mailto:{GATEWAY}"
    assert str(event["ATTENDEE"]) == "mailto:ana@example.net"
    invite_file, *files = files_of(message)
    assert invite_file == ("invite.ics", "application/ics", ics)
    assert files == [(f.name, f.mime, f.data) for f in FILES]

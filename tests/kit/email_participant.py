"""Someone with only a mailbox on the test Dovecot, writing the way real clients write.

Replies are built like Gmail builds them (multipart/alternative, a wrapped attribution
line, `> ` quoting in the text part and a gmail_quote blockquote in the HTML part, the
answers typed between the quoted questions), and calendar answers like Google Calendar's
(an iMIP REPLY with times in UTC, the one ATTENDEE with PARTSTAT and X-NUM-GUESTS, sent
to the ORGANIZER). The gateway must cope with what clients send, not with what is tidy.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import smtplib
from collections.abc import Mapping
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any, cast

from icalendar import Calendar

from tests.kit import email as kit
from tests.servers import DovecotServer, MailUser, PostfixServer

GMAIL_QUOTE = (
    '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
    'border-left:1px solid rgb(204,204,204);padding-left:1ex">'
)


class Participant:
    """Reads their inbox from disk, sends through Postfix like a client's submission."""

    def __init__(
        self, name: str, box: MailUser, dovecot: DovecotServer, postfix: PostfixServer
    ) -> None:
        self.name, self.box, self.dovecot, self.postfix = name, box, dovecot, postfix
        self._sent = 0

    async def mail(self, n: int) -> EmailMessage:
        """The n-th mail (1-based) in the inbox, waiting for it to arrive."""

        async def arrived() -> bool:
            return len(self.dovecot.mailbox_messages(self.box.address)) >= n

        await kit.until(arrived, limit=30)
        message = message_from_bytes(
            self.dovecot.mailbox_messages(self.box.address)[n - 1], policy=policy.default
        )
        assert isinstance(message, EmailMessage)
        return message

    async def send(self, message: EmailMessage, to: str) -> None:
        raw = message.as_bytes(policy=policy.SMTP)

        def send() -> None:
            with smtplib.SMTP(self.postfix.host, self.postfix.smtp_port, timeout=10) as smtp:
                smtp.sendmail(self.box.address, [to], raw)

        await asyncio.to_thread(send)

    def _new(self, to: str, subject: str) -> EmailMessage:
        self._sent += 1
        message = EmailMessage()
        message["From"] = formataddr((self.name, self.box.address))
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        digest = hashlib.sha256(f"{self.box.address}:{self._sent}".encode()).hexdigest()[:40]
        message["Message-ID"] = f"<CAF{digest}@mail.gmail.com>"
        return message

    async def write(self, to: str, subject: str, text: str) -> None:
        """A new mail (not a reply), as Gmail sends it."""
        message = self._new(to, subject)
        message.set_content(text)
        message.add_alternative(f'<div dir="ltr">{html.escape(text)}</div>', subtype="html")
        await self.send(message, to)

    async def reply(self, to: EmailMessage, text: str) -> None:
        """Gmail's top-posted reply: the new text, then the whole original quoted."""
        original = plain_text(to)
        await self._reply(to, [("new", text), ("quote", original)])

    async def reply_inline(self, to: EmailMessage, answers: Mapping[str, str]) -> None:
        """Answers typed under the quoted lines that start with each key (e.g. "1. What")."""
        pieces: list[tuple[str, str]] = []
        quoted: list[str] = []
        for line in plain_text(to).splitlines():
            quoted.append(line)
            answer = next((a for q, a in answers.items() if line.strip().startswith(q)), None)
            if answer is not None:
                pieces += [("quote", "\n".join(quoted)), ("new", answer)]
                quoted = []
        pieces.append(("quote", "\n".join(quoted)))
        assert len(pieces) == 2 * len(answers) + 1, "every answer found its question"
        await self._reply(to, pieces)

    async def _reply(self, to: EmailMessage, pieces: list[tuple[str, str]]) -> None:
        address = str(to["Reply-To"] or to["From"])
        name, sender = parseaddr(str(to["From"]))
        message = self._new(address, f"Re: {to['Subject']}")
        message["In-Reply-To"] = str(to["Message-ID"])
        message["References"] = f"{to.get('References', '')} {to['Message-ID']}".strip()
        when = datetime.now(UTC).strftime("%a, %b %-d, %Y at %-I:%M %p")
        # Gmail wraps its attribution line near 78 characters.
        attribution = f"On {when} {name} <{sender}>\nwrote:"
        text = [pieces[0][1] if pieces[0][0] == "new" else "", "", attribution, ""]
        markup = [
            f'<div dir="ltr">{_html(pieces[0][1]) if pieces[0][0] == "new" else ""}'
            '</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
            f"{html.escape(attribution.replace(chr(10), ' '))}<br></div>"
        ]
        for kind, body in pieces[1:] if pieces[0][0] == "new" else pieces:
            if kind == "quote":
                text += ["> " + line if line else ">" for line in body.splitlines()] + [""]
                markup.append(f"{GMAIL_QUOTE}{_html(body)}</blockquote>")
            else:
                text += [body, ""]
                markup.append(f"<div>{_html(body)}</div><br>")
        message.set_content("\n".join(text))
        message.add_alternative("".join(markup) + "</div>\n", subtype="html")
        await self.send(message, parseaddr(address)[1])

    async def accept_invite(self, invite_mail: EmailMessage) -> dict[str, Any]:
        """Press "Yes" in Google Calendar: an iMIP REPLY to the ORGANIZER.

        Returns the event the invitation carried (UID, SEQUENCE, ORGANIZER as read).
        """
        part = next(p for p in invite_mail.walk() if p.get_content_type() == "text/calendar")
        event = Calendar.from_ical(bytes(part.get_payload(decode=True))).walk("VEVENT")[0]
        organizer = str(event["ORGANIZER"]).removeprefix("mailto:")
        utc = "%Y%m%dT%H%M%SZ"
        start, end = event.decoded("DTSTART"), event.decoded("DTEND")
        if isinstance(start, datetime):
            times = (
                f"DTSTART:{start.astimezone(UTC):{utc}}\r\nDTEND:{end.astimezone(UTC):{utc}}\r\n"
            )
        else:
            times = f"DTSTART;VALUE=DATE:{start:%Y%m%d}\r\nDTEND;VALUE=DATE:{end:%Y%m%d}\r\n"
        stamp = f"{datetime.now(UTC):{utc}}"
        ics = (
            "BEGIN:VCALENDAR\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\n"
            "VERSION:2.0\r\nCALSCALE:GREGORIAN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n"
            f"{times}DTSTAMP:{stamp}\r\n"
            f"ORGANIZER;CN={event['ORGANIZER'].params.get('CN', '')}:mailto:{organizer}\r\n"
            f"UID:{event['UID']}\r\n"
            "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=\r\n"
            f" {self.name};X-NUM-GUESTS=0:mailto:{self.box.address}\r\n"
            f"CREATED:{stamp}\r\nLAST-MODIFIED:{stamp}\r\n"
            f"SEQUENCE:{event['SEQUENCE']}\r\nSTATUS:CONFIRMED\r\n"
            f"SUMMARY:{cast(bytes, event['SUMMARY'].to_ical()).decode()}\r\nTRANSP:OPAQUE\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        ).encode()
        message = self._new(organizer, f"Accepted: {event['SUMMARY']} ({organizer})")
        note = f"{self.name} has accepted this invitation."
        message.set_content(note)
        message.add_alternative(f"<span>{html.escape(note)}</span>", subtype="html")
        message.add_alternative(ics, "text", "calendar", params={"method": "REPLY"}, cte="base64")
        message.add_attachment(ics, "application", "ics", filename="invite.ics")
        await self.send(message, organizer)
        return {
            "uid": str(event["UID"]),
            "sequence": int(str(event["SEQUENCE"])),
            "organizer": organizer,
        }


def plain_text(message: EmailMessage) -> str:
    """The text part, with LF line ends and no trailing newlines."""
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n").rstrip("\n")


def _html(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.splitlines())

"""Calendar invitations over email (iMIP, RFC 6047): build REQUEST/CANCEL.

Reading an attendee's REPLY is in calendar_reply.py.

Pure functions over bytes: no network, no clock (callers pass ``dtstamp``), so a
resend after a crash produces the same invitation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import vRecur

from gateway.channels.email.ical.timezones import vtimezone_ics
from gateway.model import Invite

PRODID = "-//Gathering Gateway//iMIP 1.0//EN"
#: ASCII control characters iCalendar allows in no value (RFC 5545 section 3.1), but HTAB.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_PLAIN_PARAM = re.compile(r"[A-Za-z0-9._-]+")
#: PARTSTAT values of a VEVENT's ATTENDEE (RFC 5545 section 3.2.12).
_UNITS = {"YEARLY": "year", "MONTHLY": "month", "WEEKLY": "week", "DAILY": "day"}


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str = ""
    partstat: str = "NEEDS-ACTION"
    rsvp: bool = True


@dataclass(frozen=True)
class CalendarEvent:
    """One invitation. ``start``/``end`` are aware datetimes; they are shown in ``tzid``.

    For ``all_day`` events only the calendar dates of ``start`` and ``end`` (in ``tzid``)
    count and ``end`` is the *last* day of the gathering, inclusive; DTEND is written as
    the day after because RFC 5545 section 3.6.1 makes a DATE DTEND exclusive.

    ``sequence`` is the RFC 5545 section 3.8.7.4 revision counter: every REQUEST that
    changes date, time or recurrence, and every CANCEL, must carry a value higher than
    the last one sent for this ``uid`` or clients ignore it (RFC 5546 section 2.1.4).
    """

    uid: str
    sequence: int
    summary: str
    start: datetime
    end: datetime
    tzid: str
    organizer_email: str
    organizer_name: str = ""
    description: str = ""
    location: str = ""
    attendees: Sequence[Attendee] = ()
    rrule: Mapping[str, Any] | str | None = None
    url: str | None = None
    status: Literal["CONFIRMED", "CANCELLED"] = "CONFIRMED"
    all_day: bool = False

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if self.end < self.start or (self.end == self.start and not self.all_day):
            raise ValueError("end must be after start")
        if self.sequence < 0:
            raise ValueError("sequence must be >= 0")
        if self.status not in ("CONFIRMED", "CANCELLED"):
            raise ValueError(f"unsupported status {self.status!r}")
        try:
            ZoneInfo(self.tzid)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {self.tzid!r}") from error


def event_uid(*parts: str, domain: str) -> str:
    """A stable UID from e.g. (gathering slug, purpose, person id).

    Hashed because RFC 7986 section 5.3 advises against personal data in UIDs, and
    stable so a re-sent REQUEST updates the same calendar entry instead of duplicating it.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"{digest}@{domain}"


def build_request(event: CalendarEvent, *, dtstamp: datetime) -> bytes:
    """METHOD:REQUEST (RFC 5546 section 3.2.2): invite, or update with a higher sequence."""
    if event.status == "CANCELLED":
        raise ValueError("a cancelled event is sent with build_cancel")
    return _calendar(event, "REQUEST", event.status, dtstamp)


def build_cancel(event: CalendarEvent, *, dtstamp: datetime) -> bytes:
    """METHOD:CANCEL (RFC 5546 section 3.2.5) for the whole event.

    The caller passes ``event`` with ``sequence`` already incremented past the last
    REQUEST; an equal sequence is treated as stale by Outlook and Google.
    """
    return _calendar(event, "CANCEL", "CANCELLED", dtstamp)


def invite_ics(
    invite: Invite,
    *,
    organizer_email: str,
    organizer_name: str,
    attendee: str,
    dtstamp: datetime,
) -> bytes:
    """The iMIP file for a flow's `Invite` sent to one attendee (REQUEST or CANCEL)."""
    event = CalendarEvent(
        uid=invite.uid,
        sequence=invite.sequence,
        summary=invite.summary,
        start=invite.start,
        end=invite.end,
        tzid=invite.tzid,
        # Calendar clients answer the ORGANIZER, not Reply-To: it must be our mailbox.
        organizer_email=organizer_email,
        organizer_name=organizer_name,
        description=invite.description,
        location=invite.location,
        attendees=[Attendee(attendee, rsvp=True)],
        rrule=invite.rrule,
        all_day=invite.all_day,
    )
    if invite.method.upper() == "CANCEL":
        return build_cancel(event, dtstamp=dtstamp)
    return build_request(event, dtstamp=dtstamp)


def ics_method(ics: bytes) -> str | None:
    """The upper-cased METHOD of the VCALENDAR itself, or None if it has none.

    A scan of the unfolded lines, not a parse: composing checks every invitation with it,
    and only the VCALENDAR's own property counts (one nested in a component does not).
    """
    depth = 0
    for line in ics.replace(b"\r\n ", b"").replace(b"\r\n\t", b"").splitlines():
        name, _, value = line.partition(b":")
        key = name.split(b";", 1)[0].strip().upper()
        if key == b"BEGIN":
            depth += 1
            if depth == 1 and value.strip().upper() != b"VCALENDAR":
                return None
        elif key == b"END":
            depth -= 1
        elif key == b"METHOD" and depth == 1:
            return value.strip().decode("ascii", "replace").upper() or None
    return None


def _calendar(event: CalendarEvent, method: str, status: str, dtstamp: datetime) -> bytes:
    """The iCalendar text, written directly.

    Written line by line rather than through icalendar's object model: that costs about a
    millisecond per invitation, which dominated sending a gathering's invitations. The
    rules that matter are few and kept here: TEXT escaping (RFC 5545 section 3.3.11),
    parameter quoting (section 3.2, RFC 6868), folding at 75 octets (section 3.1).
    """
    zone = ZoneInfo(event.tzid)
    lines = [
        "BEGIN:VCALENDAR",
        f"PRODID:{PRODID}",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method}",
    ]
    head = "\r\n".join(lines) + "\r\n"
    if not event.all_day:
        head += vtimezone_ics(event.tzid, *_zone_years(event, zone))
    body = _vevent(event, status, dtstamp, zone, rsvp=method == "REQUEST")
    body.append("END:VCALENDAR")
    return (head + "".join(_fold(line) for line in body)).encode()


def _vevent(
    event: CalendarEvent, status: str, dtstamp: datetime, zone: ZoneInfo, *, rsvp: bool
) -> list[str]:
    start, end = event.start.astimezone(zone), event.end.astimezone(zone)
    lines = [
        "BEGIN:VEVENT",
        f"UID:{_text(event.uid)}",
        f"SEQUENCE:{event.sequence}",
        # RFC 5545 3.8.7.2: DTSTAMP is always UTC.
        f"DTSTAMP:{dtstamp.astimezone(UTC):%Y%m%dT%H%M%SZ}",
    ]
    if event.all_day:
        lines += [
            f"DTSTART;VALUE=DATE:{start.date():%Y%m%d}",
            f"DTEND;VALUE=DATE:{end.date() + timedelta(days=1):%Y%m%d}",
        ]
    else:
        tzid = _param(event.tzid)
        lines += [
            f"DTSTART;TZID={tzid}:{start:%Y%m%dT%H%M%S}",
            f"DTEND;TZID={tzid}:{end:%Y%m%dT%H%M%S}",
        ]
    if event.rrule is not None:
        recur = _recurrence(event.rrule, zone, all_day=event.all_day)
        lines.append("RRULE:" + bytes(recur.to_ical()).decode())  # type: ignore[no-untyped-call]
    lines.append(f"SUMMARY:{_text(event.summary)}")
    for name, value in (("DESCRIPTION", event.description), ("LOCATION", event.location)):
        if value:
            lines.append(f"{name}:{_text(value)}")
    if event.url:
        if any(c in event.url for c in "\r\n"):
            raise ValueError("URL may not contain line breaks")
        lines.append(f"URL:{event.url}")
    lines += [
        f"STATUS:{status}",
        "TRANSP:OPAQUE",
        f"ORGANIZER{_name(event.organizer_name)}:{_mailto(event.organizer_email)}",
    ]
    for person in event.attendees:
        # A CANCEL asks for no answer, so RSVP=TRUE there would be misleading.
        answer = "TRUE" if person.rsvp and rsvp else "FALSE"
        lines.append(
            f"ATTENDEE{_name(person.name)};CUTYPE=INDIVIDUAL;"
            f"PARTSTAT={_param(person.partstat.upper())};ROLE=REQ-PARTICIPANT;"
            f"RSVP={answer}:{_mailto(person.email)}"
        )
    lines.append("END:VEVENT")
    return lines


def _text(value: str) -> str:
    """A TEXT value (RFC 5545 section 3.3.11): backslash, semicolon, comma, newline escaped.

    Other ASCII control characters are not allowed in TEXT and make parsers drop the
    property, so they are left out (a stray escape in a typed answer must not lose it).
    """
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    value = value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")
    return _CONTROL.sub("", value)


def _param(value: str) -> str:
    """A parameter value: caret-encoded (RFC 6868), quoted unless it is a plain word."""
    # Parameter values cannot hold line breaks or other controls (section 3.1).
    value = " ".join(_CONTROL.sub(" ", value).split())
    value = value.replace("^", "^^").replace('"', "^'")
    # RFC 5545 needs quotes only around ``:;,``; but parsers differ on the rest (icalendar
    # trims spaces around an unquoted ``=``, some read ``\;`` as an escape), and quotes
    # are always allowed, so anything but a plain word is quoted.
    return value if _PLAIN_PARAM.fullmatch(value) else f'"{value}"'


def _name(name: str) -> str:
    return f";CN={_param(name)}" if name.strip() else ""


def _mailto(email: str) -> str:
    if any(c in email for c in '\r\n\t :;,"<>'):
        raise ValueError(f"not a calendar address: {email!r}")
    return f"mailto:{email}"


def _fold(line: str) -> str:
    """One content line ending in CRLF, folded so no physical line passes 75 octets."""
    data = line.encode()
    if len(data) <= 75:
        return line + "\r\n"
    out: list[bytes] = []
    limit = 75
    while len(data) > limit:
        cut = limit
        while data[cut] & 0xC0 == 0x80:  # never split a UTF-8 sequence
            cut -= 1
        out.append(data[:cut])
        data, limit = data[cut:], 74  # a continuation line starts with a space
    out.append(data)
    return b"\r\n ".join(out).decode() + "\r\n"


def _recurrence(rule: Mapping[str, Any] | str, zone: ZoneInfo, *, all_day: bool) -> vRecur:
    """Normalise a rule; UNTIL must match DTSTART's type (RFC 5545 section 3.3.10)."""
    recur: vRecur
    if isinstance(rule, str):
        recur = vRecur.from_ical(rule.strip().removeprefix("RRULE:"))
    else:  # same shape as a parsed rule: upper-case keys, list values
        recur = vRecur({k.upper(): v if isinstance(v, list) else [v] for k, v in rule.items()})
    if "FREQ" not in recur:
        raise ValueError("RRULE needs FREQ")
    until = recur.get("UNTIL")
    if until:
        value = until[0] if isinstance(until, list) else until
        recur["UNTIL"] = [_until(value, zone, all_day=all_day)]
    return recur


def _until(value: date, zone: ZoneInfo, *, all_day: bool) -> date:
    if isinstance(value, datetime):
        local = value if value.tzinfo else value.replace(tzinfo=zone)
        return local.astimezone(zone).date() if all_day else local.astimezone(UTC)
    if all_day:
        return value
    # A bare date means "through that day" in the gathering's zone.
    return datetime.combine(value, time(23, 59, 59), zone).astimezone(UTC)


def _zone_years(event: CalendarEvent, zone: ZoneInfo) -> tuple[int, int]:
    """Years the VTIMEZONE covers: start through UNTIL, or a few years for COUNT/open rules.

    Rule-based definitions extrapolate by themselves; the span only bounds the exact
    RDATE form, which stays small (two onsets a year).
    """
    first, last = event.start.astimezone(zone).year, event.end.astimezone(zone).year
    if event.rrule is not None:
        until = _recurrence(event.rrule, zone, all_day=event.all_day).get("UNTIL")
        last = max(last, until[0].year if until else first + 5)
    return first, min(last, first + 30)


# --- Human-readable summary ------------------------------------------------------------


def ics_summary_lines(event: CalendarEvent) -> list[str]:
    """'When/Repeats/Where' lines for the text and HTML bodies around an invitation."""
    zone = ZoneInfo(event.tzid)
    start, end = event.start.astimezone(zone), event.end.astimezone(zone)
    if event.all_day:
        when = _day(start) if end.date() == start.date() else f"{_day(start)} – {_day(end)}"
    elif end.date() == start.date():
        when = f"{_day(start)}, {start:%H:%M}–{end:%H:%M} ({event.tzid})"
    else:
        when = f"{_day(start)}, {start:%H:%M} – {_day(end)}, {end:%H:%M} ({event.tzid})"
    lines = [f"When: {when}"]
    if event.rrule is not None:
        recur = _recurrence(event.rrule, zone, all_day=event.all_day)
        lines.append(f"Repeats: {_describe_rule(recur, zone)}")
    if event.location:
        lines.append(f"Where: {event.location}")
    return lines


def _day(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"  # %-d is not portable


def _describe_rule(recur: vRecur, zone: ZoneInfo) -> str:
    freq = str(recur["FREQ"][0]).upper()
    interval = int(recur.get("INTERVAL", [1])[0])
    text = freq.lower() if interval == 1 else f"every {interval} {_UNITS.get(freq, freq)}s"
    if "COUNT" in recur:
        text += f", {int(recur['COUNT'][0])} times"
    elif "UNTIL" in recur:
        until = recur["UNTIL"][0]
        text += f", until {_day(until.astimezone(zone) if isinstance(until, datetime) else until)}"
    return text

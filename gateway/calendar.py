"""Calendar invitations over email (iMIP, RFC 6047): build REQUEST/CANCEL, parse REPLY.

Pure functions over bytes: no network, no clock (callers pass ``dtstamp``), so a
resend after a crash produces the same invitation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import (
    Calendar,
    Event,
    Timezone,
    TimezoneDaylight,
    TimezoneStandard,
    vCalAddress,
    vRecur,
)

PRODID = "-//Gathering Gateway//iMIP 1.0//EN"
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
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


@dataclass(frozen=True)
class CalendarReplyInfo:
    uid: str
    sequence: int
    attendee_email: str
    partstat: str
    recurrence_id: date | datetime | None
    organizer_email: str | None
    dtstamp: datetime | None
    comment: str | None


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
    return bytes(_calendar(event, "REQUEST", event.status, dtstamp).to_ical())


def build_cancel(event: CalendarEvent, *, dtstamp: datetime) -> bytes:
    """METHOD:CANCEL (RFC 5546 section 3.2.5) for the whole event.

    The caller passes ``event`` with ``sequence`` already incremented past the last
    REQUEST; an equal sequence is treated as stale by Outlook and Google.
    """
    return bytes(_calendar(event, "CANCEL", "CANCELLED", dtstamp).to_ical())


def ics_method(ics: bytes) -> str | None:
    """The upper-cased METHOD of a VCALENDAR, or None if absent or unparsable."""
    try:
        method = Calendar.from_ical(ics).get("METHOD")
    except Exception:
        return None
    return str(method).upper() if method else None


def _calendar(event: CalendarEvent, method: str, status: str, dtstamp: datetime) -> Calendar:
    cal = Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("CALSCALE", "GREGORIAN")
    cal.add("METHOD", method)
    zone = ZoneInfo(event.tzid)
    if not event.all_day:
        cal.add_component(vtimezone(event.tzid, *_zone_years(event, zone)))
    cal.add_component(_vevent(event, status, dtstamp, zone, rsvp=method == "REQUEST"))
    return cal


def _vevent(
    event: CalendarEvent, status: str, dtstamp: datetime, zone: ZoneInfo, *, rsvp: bool
) -> Event:
    vevent = Event()
    vevent.add("UID", event.uid)
    vevent.add("SEQUENCE", event.sequence)
    vevent.add("DTSTAMP", dtstamp.astimezone(UTC))  # RFC 5545 3.8.7.2: always UTC
    start, end = event.start.astimezone(zone), event.end.astimezone(zone)
    if event.all_day:
        vevent.add("DTSTART", start.date())
        vevent.add("DTEND", end.date() + timedelta(days=1))
    else:
        vevent.add("DTSTART", start)
        vevent.add("DTEND", end)
    if event.rrule is not None:
        vevent.add("RRULE", _recurrence(event.rrule, zone, all_day=event.all_day))
    vevent.add("SUMMARY", event.summary)
    for name, value in (("DESCRIPTION", event.description), ("LOCATION", event.location)):
        if value:
            vevent.add(name, value)
    if event.url:
        vevent.add("URL", event.url)
    vevent.add("STATUS", status)
    vevent.add("TRANSP", "OPAQUE")
    vevent.add("ORGANIZER", _address(event.organizer_email, event.organizer_name))
    for person in event.attendees:
        vevent.add("ATTENDEE", _attendee(person, rsvp=rsvp))
    return vevent


def _address(email: str, name: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    if name:
        # Parameter values cannot contain line breaks (RFC 5545 section 3.1);
        # quotes are caret-encoded by icalendar (RFC 6868).
        address.params["CN"] = " ".join(name.split())
    return address


def _attendee(person: Attendee, *, rsvp: bool) -> vCalAddress:
    address = _address(person.email, person.name)
    address.params["CUTYPE"] = "INDIVIDUAL"
    address.params["ROLE"] = "REQ-PARTICIPANT"
    address.params["PARTSTAT"] = person.partstat.upper()
    # A CANCEL asks for no answer, so RSVP=TRUE there would be misleading.
    address.params["RSVP"] = "TRUE" if person.rsvp and rsvp else "FALSE"
    return address


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


# --- VTIMEZONE (RFC 5545 section 3.6.5) ------------------------------------------------
# Outlook maps a VTIMEZONE to one yearly rule and prefers RRULE-based STANDARD/DAYLIGHT
# parts ([MS-OXCICAL] 2.1.3.1.1.19); RDATE lists are imported poorly. So zones whose
# transitions follow an "nth/last weekday of month" rule over the whole span get that
# Outlook-style form; others (e.g. Ramadan-dependent ones) get exact RDATE lists.
# Both are computed from zoneinfo here: icalendar's Timezone.from_tzid places onsets
# only approximately (it searches in coarse steps), which moves events near a switch.


def vtimezone(tzid: str, first_year: int, last_year: int) -> Timezone:
    """A VTIMEZONE for ``tzid`` exact from 1 January ``first_year`` through ``last_year``."""
    zone = ZoneInfo(tzid)
    # Start a year early: before its first onset a VTIMEZONE defines no offset, and in
    # the southern hemisphere the year begins in daylight time.
    per_year = [_transitions(zone, year) for year in range(first_year - 1, last_year + 1)]
    component = Timezone()
    component.add("TZID", tzid)
    if not any(per_year):
        probe = datetime(first_year, 1, 1, tzinfo=zone)
        offset = probe.utcoffset() or timedelta()
        component.add_component(_part(datetime(first_year, 1, 1), offset, offset, probe))
        return component
    rules = _yearly_rules(per_year)
    if rules is not None:
        for (instant, before, after), rule in zip(per_year[0], rules, strict=True):
            part = _part(_onset(instant, before), before, after, instant.astimezone(zone))
            part.add("RRULE", rule)
            component.add_component(part)
        return component
    groups: dict[tuple[timedelta, timedelta, str], list[datetime]] = {}
    for instant, before, after in (t for year in per_year for t in year):
        key = (before, after, instant.astimezone(zone).tzname() or "")
        groups.setdefault(key, []).append(_onset(instant, before))
    for (before, after, name), onsets in groups.items():
        part = _part(onsets[0], before, after, name)
        if onsets[1:]:
            part.add("RDATE", onsets[1:])
        component.add_component(part)
    return component


def _onset(instant: datetime, before: timedelta) -> datetime:
    """Onset as local time in the offset in force *before* it (RFC 5545 section 3.6.5)."""
    return (instant + before).replace(tzinfo=None)


def _part(
    start: datetime, before: timedelta, after: timedelta, name: datetime | str
) -> TimezoneStandard | TimezoneDaylight:
    part = TimezoneDaylight() if after > before else TimezoneStandard()
    part.add("DTSTART", start)
    part.add("TZOFFSETFROM", before)
    part.add("TZOFFSETTO", after)
    part.add("TZNAME", name if isinstance(name, str) else name.tzname() or "")
    return part


_Transition = tuple[datetime, timedelta, timedelta]


def _transitions(zone: ZoneInfo, year: int) -> list[_Transition]:
    """UTC instants in ``year`` where the offset changes, with offsets before and after."""
    found: list[_Transition] = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    stop = datetime(year + 1, 1, 1, tzinfo=UTC)
    while probe < stop:
        nxt = probe + timedelta(days=1)
        before, after = _offset(probe, zone), _offset(nxt, zone)
        if before != after:
            lo, hi = probe, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if _offset(mid, zone) == before else (lo, mid)
            found.append((hi.replace(second=0, microsecond=0), before, after))
        probe = nxt
    return found


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta()


def _yearly_rules(per_year: list[list[_Transition]]) -> list[dict[str, Any]] | None:
    """One BYMONTH/BYDAY rule per transition of the first year, if every year obeys it."""
    if any(len(year) != 2 for year in per_year):
        return None
    keys = [[_rule_key(transition) for transition in year] for year in per_year]
    if any(year != keys[0] for year in keys):
        return None
    return [{"FREQ": "YEARLY", "BYMONTH": key[3], "BYDAY": key[4]} for key in keys[0]]


def _rule_key(transition: _Transition) -> tuple[timedelta, timedelta, time, int, str]:
    instant, before, after = transition
    onset = _onset(instant, before)
    return before, after, onset.time(), onset.month, _byday(onset.date())


def _byday(day: date) -> str:
    """``-1SU`` for a last weekday of its month, else ``2SU`` style (RFC 5545 3.3.10)."""
    weekday = _WEEKDAYS[day.weekday()]
    if (day + timedelta(days=7)).month != day.month:
        return f"-1{weekday}"
    return f"{(day.day - 1) // 7 + 1}{weekday}"


# --- Replies (RFC 5546 section 3.2.3) --------------------------------------------------


def parse_reply(ics: bytes) -> CalendarReplyInfo | None:
    """Read an attendee's answer; None for anything that is not a usable reply.

    Accepts METHOD:REPLY, and also a VCALENDAR without METHOD holding one VEVENT with one
    ATTENDEE that has PARTSTAT, which some Outlook versions send. ORGANIZER is optional
    because Outlook omits it. Never raises: input comes from arbitrary senders.
    """
    try:
        return _parse_reply(Calendar.from_ical(ics))
    except Exception:
        return None


def _parse_reply(cal: Calendar) -> CalendarReplyInfo | None:
    if cal.name != "VCALENDAR":
        return None
    method = str(cal.get("METHOD", "")).upper()
    events = [c for c in cal.subcomponents if c.name == "VEVENT"]
    if not events or method not in ("REPLY", ""):
        return None
    vevent = events[0]
    attendees = _as_list(vevent.get("ATTENDEE"))
    if not method and (len(events) != 1 or len(attendees) != 1):
        return None
    if not method and "PARTSTAT" not in attendees[0].params:
        return None
    attendee = _replying_attendee(attendees)
    uid = str(vevent.get("UID", "")).strip()
    email = _email_of(attendee) if attendee is not None else None
    if attendee is None or not uid or not email:
        return None
    organizer = vevent.get("ORGANIZER")
    return CalendarReplyInfo(
        uid=uid,
        sequence=_int(vevent.get("SEQUENCE")),
        attendee_email=email,
        # RFC 5545 section 3.2.12: PARTSTAT defaults to NEEDS-ACTION.
        partstat=str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
        recurrence_id=vevent.decoded("RECURRENCE-ID") if "RECURRENCE-ID" in vevent else None,
        organizer_email=_email_of(organizer) if organizer is not None else None,
        dtstamp=_utc(vevent.decoded("DTSTAMP")) if "DTSTAMP" in vevent else None,
        comment=str(vevent["COMMENT"]) if isinstance(vevent.get("COMMENT"), str) else None,
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _replying_attendee(attendees: list[Any]) -> Any | None:
    """RFC 5546 wants exactly one ATTENDEE; if a client sends more, take the one that answered."""
    if len(attendees) == 1:
        return attendees[0]
    answered = [
        a
        for a in attendees
        if str(a.params.get("PARTSTAT", "")).upper() not in ("", "NEEDS-ACTION")
    ]
    return answered[0] if len(answered) == 1 else None


def _email_of(address: Any) -> str | None:
    """``mailto:`` value, or the EMAIL parameter (RFC 7986 section 6.2) for other URIs."""
    value = str(address).strip()
    if value.lower().startswith("mailto:"):
        value = value[len("mailto:") :]
    elif "EMAIL" in address.params:
        value = str(address.params["EMAIL"])
    value = value.strip().lower()
    return value if "@" in value else None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


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

"""Reading an attendee's answer to an invitation (iMIP REPLY, RFC 5546 section 3.2.3).

Pure and total: input comes from arbitrary senders, so nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from icalendar import Calendar

_PARTSTATS = frozenset({"NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED"})


@dataclass(frozen=True)
class CalendarReply:
    """An attendee's answer to an invitation (iMIP REPLY), as `parse_reply` reads it.

    ``attendee`` is the answering ATTENDEE's address (lower-case), None when it carries no
    usable one; it may differ from the mail's From (replies sent from an alias): both are
    reported and the service decides. ``organizer`` is None when the client left it out
    (Outlook does). ``sequence`` is None when absent or unreadable (RFC 5545 then means 0).
    ``recurrence_id`` is the answered occurrence in ISO 8601, None for the whole series.
    """

    uid: str
    partstat: str
    attendee: str | None
    organizer: str | None = None
    sequence: int | None = None
    recurrence_id: str | None = None


def parse_reply(ics: bytes | str, sender: str | None = None) -> CalendarReply | None:
    """Read an attendee's answer; None for anything that is not a usable reply.

    Accepts METHOD:REPLY, and also a VCALENDAR without METHOD holding one VEVENT with one
    ATTENDEE that has PARTSTAT, which some Outlook versions send. Of several VEVENTs (a
    series and answered occurrences) the first usable one counts. ``sender`` is the mail's
    From address, used to pick among several ATTENDEEs (see `_answering`). Never raises:
    input comes from arbitrary senders.
    """
    try:
        calendar = Calendar.from_ical(ics)
        return _read_reply(calendar, (sender or "").strip().lower() or None)
    except Exception:
        return None


def _read_reply(calendar: Calendar, sender: str | None) -> CalendarReply | None:
    if calendar.name != "VCALENDAR":
        return None
    method = str(calendar.get("METHOD", "")).strip().upper()
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if not method:
        # Without METHOD only an unmistakable answer counts: a calendar file someone
        # attaches is not a reply.
        attendees = _as_list(events[0].get("ATTENDEE")) if len(events) == 1 else []
        if len(attendees) != 1 or "PARTSTAT" not in attendees[0].params:
            return None
    elif method != "REPLY":
        return None
    for event in events:
        reply = _read_event(event, sender)
        if reply is not None:
            return reply
    return None


def _read_event(event: Any, sender: str | None) -> CalendarReply | None:
    uid = str(event.get("UID", "")).strip()
    attendee = _answering(_as_list(event.get("ATTENDEE")), sender)
    if not uid or attendee is None or _partstat(attendee) not in _PARTSTATS:
        return None
    recurrence_id: str | None = None
    if "RECURRENCE-ID" in event:
        try:
            occurrence = event["RECURRENCE-ID"].dt
        except (AttributeError, ValueError):  # broken (icalendar keeps it as text), repeated
            return None
        if not isinstance(occurrence, date):
            return None  # an answer for an occurrence we cannot name is no usable answer
        recurrence_id = occurrence.isoformat()
    organizer = event.get("ORGANIZER")
    return CalendarReply(
        uid=uid,
        partstat=_partstat(attendee),
        attendee=_email_of(attendee),
        organizer=_email_of(organizer) if organizer is not None else None,
        # Some Outlook replies carry the sequence only in Microsoft's own property.
        sequence=_sequence(event.get("SEQUENCE", event.get("X-MICROSOFT-CDO-APPT-SEQUENCE"))),
        recurrence_id=recurrence_id,
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _partstat(attendee: Any) -> str:
    # RFC 5545 section 3.2.12: PARTSTAT defaults to NEEDS-ACTION.
    return str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).strip().upper()


def _answering(attendees: list[Any], sender: str | None) -> Any | None:
    """The ATTENDEE who answered.

    RFC 5546 wants exactly one in a REPLY, and it may differ from the sender (an alias).
    When a client sends more: the one with the sender's address, else the only one whose
    PARTSTAT is an answer. Otherwise no one: taking, say, the first could record one
    person's answer for another (routing trusts this address when the sender has no
    invite with that UID).
    """
    if len(attendees) == 1:
        return attendees[0]
    if sender is not None:
        for attendee in attendees:
            if _email_of(attendee) == sender:
                return attendee
    answered = [a for a in attendees if _partstat(a) != "NEEDS-ACTION"]
    return answered[0] if len(answered) == 1 else None


def _email_of(address: Any) -> str | None:
    """``mailto:`` value, or the EMAIL parameter (RFC 7986 section 6.2) for other URIs."""
    value = str(address).strip()
    if value.lower().startswith("mailto:"):
        value = value[len("mailto:") :]
    elif "EMAIL" in address.params:
        value = str(address.params["EMAIL"])
    value = value.strip().strip("<>").strip().lower()
    return value if "@" in value else None


def _sequence(value: Any) -> int | None:
    """SEQUENCE, or None when absent or unreadable (RFC 5545 then means 0)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None

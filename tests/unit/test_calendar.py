"""iMIP building and reply parsing, checked with icalendar and with ical.js (Thunderbird)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from gateway.channels.email.ical.invite import (
    Attendee,
    CalendarEvent,
    build_cancel,
    build_request,
    event_uid,
    ics_method,
    ics_summary_lines,
)
from gateway.channels.email.ical.reply import CalendarReply, parse_reply
from gateway.channels.email.ical.timezones import vtimezone
from tests.kit.optional import unavailable

UTC = UTC
LISBON = ZoneInfo("Europe/Lisbon")
NEW_YORK = ZoneInfo("America/New_York")
DTSTAMP = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
JS_DIR = Path(__file__).resolve().parents[1] / "js"
LONG = "Bring a sleeping bag, a torch, rain gear and something to share. " * 6


def crew_call_lisbon() -> CalendarEvent:
    """Weekly call that crosses the EU switch to summer time on 29 March 2026."""
    return CalendarEvent(
        uid=event_uid("serra-camp-2026", "crew-call", "person-17", domain="gw.example.org"),
        sequence=0,
        summary="Chamada da equipa – Acampamento São João ☀",
        description=LONG,
        location="Sala Ñandú, Rua da Conceição 12, Lisboa",
        start=datetime(2026, 3, 14, 19, 0, tzinfo=LISBON),
        end=datetime(2026, 3, 14, 20, 30, tzinfo=LISBON),
        tzid="Europe/Lisbon",
        rrule="FREQ=WEEKLY;COUNT=6",
        organizer_email="calendar@gw.example.org",
        organizer_name="Gathering Gateway",
        attendees=[
            Attendee("zoe@example.com", 'Zoë "Zed" Ørsted, Jr.'),
            Attendee("li@example.net", "李小龍"),
        ],
        url="https://gw.example.org/g/serra-camp-2026",
    )


def crew_call_new_york() -> CalendarEvent:
    """Weekly call with UNTIL, crossing the US end of daylight time on 1 November 2026."""
    return CalendarEvent(
        uid=event_uid("lake-retreat", "crew-call", "p2", domain="gw.example.org"),
        sequence=3,
        summary="Crew call",
        start=datetime(2026, 10, 20, 18, 0, tzinfo=NEW_YORK),
        end=datetime(2026, 10, 20, 19, 0, tzinfo=NEW_YORK),
        tzid="America/New_York",
        rrule={"FREQ": "WEEKLY", "UNTIL": date(2026, 11, 17)},
        organizer_email="calendar@gw.example.org",
        attendees=[Attendee("sam@example.org", "Sam")],
    )


def gathering_all_day() -> CalendarEvent:
    return CalendarEvent(
        uid=event_uid("serra-camp-2026", "gathering", "person-17", domain="gw.example.org"),
        sequence=1,
        summary="Serra camp",
        start=datetime(2026, 7, 31, 16, 0, tzinfo=LISBON),
        end=datetime(2026, 8, 2, 14, 0, tzinfo=LISBON),
        tzid="Europe/Lisbon",
        all_day=True,
        organizer_email="calendar@gw.example.org",
        organizer_name="Serra camp",
        attendees=[Attendee("zoe@example.com", "Zoë")],
    )


def weekly_utc(start: datetime, count: int) -> list[str]:
    """Expected occurrences: same wall-clock time each week, shown in UTC like ical.js."""
    zone = start.tzinfo
    out = []
    for week in range(count):
        local = (start.replace(tzinfo=None) + timedelta(weeks=week)).replace(tzinfo=zone)
        out.append(local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


CASES: dict[str, tuple[CalendarEvent, str]] = {
    "request-lisbon-recurring": (crew_call_lisbon(), "REQUEST"),
    "request-new-york-until": (crew_call_new_york(), "REQUEST"),
    "request-all-day": (gathering_all_day(), "REQUEST"),
    "cancel-lisbon": (replace(crew_call_lisbon(), sequence=1), "CANCEL"),
}


def build(event: CalendarEvent, method: str) -> bytes:
    builder = build_request if method == "REQUEST" else build_cancel
    return builder(event, dtstamp=DTSTAMP)


# --- ical.js -----------------------------------------------------------------------------


def node_checker() -> list[str]:
    """The ical.js command, or skip when it is not installed.

    Under CI (``CI`` set, as .ci/run does after `npm ci --prefix tests/js`) a missing
    checker fails instead, like the server fixtures, so it cannot pass by skipping.
    """
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "ical.js").is_dir():
        unavailable("node or ical.js is not installed: run `npm ci --prefix tests/js`")
    return [node, str(JS_DIR / "parse_ics.mjs")]


def ical_js(paths: list[Path]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [*node_checker(), *map(str, paths)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def js_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("ics")
    paths = []
    for name, (event, method) in CASES.items():
        path = folder / f"{name}.ics"
        path.write_bytes(build(event, method))
        paths.append(path)
    return {name: result for name, result in zip(CASES, ical_js(paths), strict=True)}


@pytest.mark.parametrize("name", list(CASES))
def test_ical_js_reads_header_and_people(js_results: dict[str, Any], name: str) -> None:
    event, method = CASES[name]
    cal = js_results[name]
    assert (cal["method"], cal["version"], cal["calscale"]) == (method, "2.0", "GREGORIAN")
    [read] = cal["events"]
    assert read["uid"] == event.uid
    assert read["sequence"] == event.sequence
    assert read["summary"] == event.summary
    assert read["status"] == ("CANCELLED" if method == "CANCEL" else "CONFIRMED")
    assert read["organizer"]["email"] == event.organizer_email
    attendees = [(a["email"], a["cn"], a["partstat"], a["role"]) for a in read["attendees"]]
    assert attendees == [
        (a.email, a.name, "NEEDS-ACTION", "REQ-PARTICIPANT") for a in event.attendees
    ]
    assert {a["rsvp"] for a in read["attendees"]} == {"TRUE" if method == "REQUEST" else "FALSE"}


def test_ical_js_lisbon_weekly_keeps_wall_clock_across_dst(js_results: dict[str, Any]) -> None:
    cal = js_results["request-lisbon-recurring"]
    assert cal["timezones"] == ["Europe/Lisbon"]
    [read] = cal["events"]
    assert read["start"]["utc"] == "2026-03-14T19:00:00Z"
    assert read["end"]["utc"] == "2026-03-14T20:30:00Z"
    assert read["rrule"] == "FREQ=WEEKLY;COUNT=6"
    assert read["description"] == LONG
    assert read["location"] == crew_call_lisbon().location
    assert read["url"] == crew_call_lisbon().url
    assert read["occurrences"] == weekly_utc(crew_call_lisbon().start, 6)
    assert read["occurrences"][3] == "2026-04-04T18:00:00Z"  # 19:00 WEST


def test_ical_js_new_york_until_in_utc(js_results: dict[str, Any]) -> None:
    [read] = js_results["request-new-york-until"]["events"]
    assert read["start"] == {
        "isDate": False,
        "tzid": "America/New_York",
        "local": "2026-10-20T18:00:00",
        "utc": "2026-10-20T22:00:00Z",
    }
    # RFC 5545 3.3.10: UNTIL is UTC when DTSTART has a TZID; the whole last day counts.
    assert read["rrule"] == "FREQ=WEEKLY;UNTIL=20261118T045959Z"
    assert read["occurrences"] == weekly_utc(crew_call_new_york().start, 5)
    assert read["occurrences"][-1] == "2026-11-17T23:00:00Z"  # 18:00 EST


def test_ical_js_all_day_uses_dates_with_exclusive_end(js_results: dict[str, Any]) -> None:
    cal = js_results["request-all-day"]
    assert cal["timezones"] == []
    [read] = cal["events"]
    assert read["start"] == {"isDate": True, "tzid": None, "local": "2026-07-31", "utc": None}
    assert read["end"]["local"] == "2026-08-03"
    assert read["occurrences"] == ["2026-07-31"]


def test_ical_js_rejects_garbage(tmp_path: Path) -> None:
    """The checker itself must fail loudly, or the tests above would prove nothing."""
    bad = tmp_path / "bad.ics"
    bad.write_text("BEGIN:VCALENDAR\r\nthis is not a content line\r\n")
    result = subprocess.run([*node_checker(), str(bad)], capture_output=True, check=False)
    assert result.returncode != 0


# --- icalendar round trip ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_icalendar_round_trip(name: str) -> None:
    event, method = CASES[name]
    raw = build(event, method)
    cal = Calendar.from_ical(raw)
    assert str(cal["METHOD"]) == method == ics_method(raw)
    assert str(cal["PRODID"]) and str(cal["VERSION"]) == "2.0"
    assert len(cal.walk("VEVENT")) == 1
    vevent: Any = cal.walk("VEVENT")[0]
    assert str(vevent["UID"]) == event.uid
    assert int(vevent["SEQUENCE"]) == event.sequence
    assert str(vevent["SUMMARY"]) == event.summary
    assert vevent.decoded("DTSTAMP") == DTSTAMP
    if event.all_day:
        assert vevent.decoded("DTSTART") == date(2026, 7, 31)
        assert vevent.decoded("DTEND") == date(2026, 8, 3)
    else:
        assert vevent.decoded("DTSTART") == event.start
        assert vevent.decoded("DTEND") == event.end
        assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == [event.tzid]
    organizer = vevent["ORGANIZER"]
    assert str(organizer) == f"mailto:{event.organizer_email}"
    attendees = vevent["ATTENDEE"]
    attendees = attendees if isinstance(attendees, list) else [attendees]
    assert [(str(a), a.params["CN"]) for a in attendees] == [
        (f"mailto:{a.email}", a.name) for a in event.attendees
    ]


def test_raw_output_is_crlf_and_folded() -> None:
    raw = build_request(crew_call_lisbon(), dtstamp=DTSTAMP)
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 75  # RFC 5545 section 3.1


def test_text_and_parameters_survive_escaping_and_folding() -> None:
    """Values that need every escape, and folds that fall inside multi-byte characters."""
    tricky = 'a\\b; c, d\n"e"\r\nf ' + "ç☀" * 40
    event = replace(
        crew_call_lisbon(),
        summary=tricky,
        description=tricky,
        location=tricky,
        organizer_name='Us: "the ^crew^"; a, b',
        attendees=[Attendee("zoe@example.com", tricky.replace("\r\n", " "))],
    )
    raw = build_request(event, dtstamp=DTSTAMP)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 75
    raw.decode()  # every physical line is whole UTF-8
    vevent: Any = Calendar.from_ical(raw).walk("VEVENT")[0]
    newline = tricky.replace("\r\n", "\n")
    assert [str(vevent[k]) for k in ("SUMMARY", "DESCRIPTION", "LOCATION")] == [newline] * 3
    assert vevent["ORGANIZER"].params["CN"] == 'Us: "the ^crew^"; a, b'
    assert vevent["ATTENDEE"].params["CN"] == " ".join(tricky.split())


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_ANY = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=100, deadline=None)
@given(summary=_ANY.filter(str.strip), text=_ANY, name=_ANY)
def test_any_text_round_trips_through_icalendar(summary: str, text: str, name: str) -> None:
    event = replace(
        gathering_all_day(),
        summary=summary,
        description=text,
        location=text,
        attendees=[Attendee("zoe@example.com", name)],
    )
    raw = build_request(event, dtstamp=DTSTAMP)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 75
    vevent: Any = Calendar.from_ical(raw).walk("VEVENT")[0]
    # Line breaks survive as such; other ASCII controls are not allowed in iCalendar.
    as_ical = [
        CONTROL.sub("", t.replace("\r\n", "\n").replace("\r", "\n")) for t in (summary, text)
    ]
    assert str(vevent["SUMMARY"]) == as_ical[0]
    if text:
        assert str(vevent.get("DESCRIPTION", "")) == str(vevent.get("LOCATION", "")) == as_ical[1]
    written = " ".join(CONTROL.sub(" ", name).split())
    # icalendar's parser unescapes backslash sequences even inside quoted parameter values,
    # where RFC 5545 has none (ical.js reads them as written).
    assume(not re.search(r"\\[\\;,nN]", written))
    assert vevent["ATTENDEE"].params.get("CN", "") == written


def test_ics_method_reads_only_the_calendar_property() -> None:
    raw = build_request(crew_call_lisbon(), dtstamp=DTSTAMP)
    assert ics_method(raw) == "REQUEST"
    nested = raw.replace(b"METHOD:REQUEST\r\n", b"").replace(
        b"BEGIN:VEVENT\r\n", b"BEGIN:VEVENT\r\nMETHOD:CANCEL\r\n"
    )
    assert ics_method(nested) is None
    assert ics_method(b"not a calendar") is None


def test_cancel_keeps_the_uid_and_carries_the_given_sequence() -> None:
    request = Calendar.from_ical(build_request(crew_call_lisbon(), dtstamp=DTSTAMP))
    cancel = Calendar.from_ical(
        build_cancel(replace(crew_call_lisbon(), sequence=1), dtstamp=DTSTAMP)
    )
    req: Any = request.walk("VEVENT")[0]
    can: Any = cancel.walk("VEVENT")[0]
    assert can["UID"] == req["UID"]
    assert int(can["SEQUENCE"]) > int(req["SEQUENCE"])
    assert str(can["STATUS"]) == "CANCELLED"


def test_request_refuses_cancelled_status() -> None:
    with pytest.raises(ValueError):
        build_request(replace(crew_call_lisbon(), status="CANCELLED"), dtstamp=DTSTAMP)


@pytest.mark.parametrize(
    "changes",
    [
        {"start": datetime(2026, 3, 14, 19, 0)},
        {"end": datetime(2026, 3, 14, 18, 0, tzinfo=LISBON)},
        {"sequence": -1},
        {"tzid": "Mars/Olympus_Mons"},
    ],
)
def test_event_validation(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(crew_call_lisbon(), **changes)


def test_event_uid_is_stable_and_opaque() -> None:
    uid = event_uid("camp", "crew-call", "zoe@example.com", domain="gw.example.org")
    assert uid == event_uid("camp", "crew-call", "zoe@example.com", domain="gw.example.org")
    assert uid != event_uid("camp", "crew-call", "sam@example.org", domain="gw.example.org")
    assert "zoe" not in uid and uid.endswith("@gw.example.org")


@pytest.mark.parametrize(
    ("tzid", "first", "last"),
    [
        ("Europe/Lisbon", 2025, 2027),
        ("America/New_York", 2025, 2027),
        ("Australia/Sydney", 2025, 2027),
        ("Asia/Kolkata", 2025, 2027),
        ("Europe/Dublin", 2025, 2027),
        ("America/Santiago", 2025, 2027),
        ("Africa/Casablanca", 2025, 2027),
        ("America/Sao_Paulo", 2018, 2020),  # daylight time abolished in 2019
    ],
)
def test_vtimezone_matches_zoneinfo(tzid: str, first: int, last: int) -> None:
    """Offsets from our VTIMEZONE equal the zone database at every hour of the span."""
    zone = ZoneInfo(tzid)
    defined = vtimezone(tzid, first, last).to_tz(lookup_tzid=False)
    instant = datetime(first, 1, 1, tzinfo=UTC)
    while instant < datetime(last + 1, 1, 1, tzinfo=UTC):
        assert instant.astimezone(defined).utcoffset() == instant.astimezone(zone).utcoffset()
        instant += timedelta(hours=1)


def test_vtimezone_prefers_yearly_rules() -> None:
    text = vtimezone("America/New_York", 2025, 2027).to_ical().decode()
    assert "RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3" in text
    assert "RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11" in text
    # Onsets are local time in the offset before them (RFC 5545 section 3.6.5).
    assert "DTSTART:20240310T020000" in text and "DTSTART:20241103T020000" in text
    assert "RDATE" not in text
    # Ramadan-dependent switches follow no yearly rule: listed one by one.
    assert "RDATE" in vtimezone("Africa/Casablanca", 2025, 2027).to_ical().decode()


def test_summary_lines() -> None:
    assert ics_summary_lines(crew_call_lisbon()) == [
        "When: Sat 14 Mar 2026, 19:00–20:30 (Europe/Lisbon)",
        "Repeats: weekly, 6 times",
        "Where: Sala Ñandú, Rua da Conceição 12, Lisboa",
    ]
    assert ics_summary_lines(gathering_all_day()) == ["When: Fri 31 Jul 2026 – Sun 2 Aug 2026"]
    assert ics_summary_lines(crew_call_new_york())[1] == "Repeats: weekly, until Tue 17 Nov 2026"


# --- parse_reply -------------------------------------------------------------------------


def crlf(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


GOOGLE_REPLY = crlf("""
BEGIN:VCALENDAR
PRODID:-//Google Inc//Google Calendar 70.9054//EN
VERSION:2.0
CALSCALE:GREGORIAN
METHOD:REPLY
BEGIN:VEVENT
DTSTART:20260314T190000Z
DTEND:20260314T203000Z
DTSTAMP:20260302T101500Z
ORGANIZER;CN=Gathering Gateway:mailto:calendar@gw.example.org
UID:8fb8a4f7f5e7e91afa4ec685fd9ca444@gw.example.org
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=Zoë Ø
 rsted;X-NUM-GUESTS=0:mailto:Zoe@Example.COM
COMMENT:Looking forward to it!
CREATED:20260301T090000Z
LAST-MODIFIED:20260302T101500Z
SEQUENCE:2
STATUS:CONFIRMED
SUMMARY:Chamada da equipa
TRANSP:OPAQUE
END:VEVENT
END:VCALENDAR
""")

OUTLOOK_REPLY = crlf("""
BEGIN:VCALENDAR
METHOD:REPLY
PRODID:Microsoft Exchange Server 2010
VERSION:2.0
BEGIN:VTIMEZONE
TZID:GMT Standard Time
BEGIN:STANDARD
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0000
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T010000
TZOFFSETFROM:+0000
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
ATTENDEE;PARTSTAT=tentative;CN=Sam Smith:MAILTO:SAM@EXAMPLE.ORG
COMMENT;LANGUAGE=en-GB:\\n
SUMMARY;LANGUAGE=en-GB:Tentative: Crew call
DTSTART;TZID=GMT Standard Time:20260314T190000
DTEND;TZID=GMT Standard Time:20260314T203000
UID:crew-17@gw.example.org
CLASS:PUBLIC
PRIORITY:5
DTSTAMP:20260303T080000Z
TRANSP:OPAQUE
STATUS:CONFIRMED
LOCATION;LANGUAGE=en-GB:Sala
X-MICROSOFT-CDO-APPT-SEQUENCE:1
X-MICROSOFT-CDO-REPLYTIME:20260303T080000Z
END:VEVENT
END:VCALENDAR
""")

APPLE_REPLY = crlf("""
BEGIN:VCALENDAR
VERSION:2.0
METHOD:REPLY
PRODID:-//Apple Inc.//macOS 14.4//EN
BEGIN:VEVENT
UID:crew-17@gw.example.org
DTSTAMP:20260304T120000Z
RECURRENCE-ID;TZID=Europe/Lisbon:20260321T190000
DTSTART;TZID=Europe/Lisbon:20260321T190000
DTEND;TZID=Europe/Lisbon:20260321T203000
SEQUENCE:4
SUMMARY:Crew call
ORGANIZER;CN="Gathering Gateway";EMAIL="calendar@gw.example.org":mailto:ca
 lendar@gw.example.org
ATTENDEE;CN="Li";CUTYPE=INDIVIDUAL;EMAIL="li@example.net";PARTSTAT=DECLINE
 D:urn:uuid:00000000-0000-0000-0000-000000000017
REQUEST-STATUS:2.0;Success
END:VEVENT
END:VCALENDAR
""")


def test_parse_google_reply() -> None:
    info = parse_reply(GOOGLE_REPLY)
    assert info == CalendarReply(
        uid="8fb8a4f7f5e7e91afa4ec685fd9ca444@gw.example.org",
        partstat="ACCEPTED",
        attendee="zoe@example.com",
        organizer="calendar@gw.example.org",
        sequence=2,
        recurrence_id=None,
    )


def test_parse_outlook_reply_without_organizer_or_sequence() -> None:
    info = parse_reply(OUTLOOK_REPLY)
    assert info is not None
    # No SEQUENCE: Outlook's X-MICROSOFT-CDO-APPT-SEQUENCE stands in for it.
    assert (info.uid, info.sequence) == ("crew-17@gw.example.org", 1)
    assert (info.attendee, info.partstat) == ("sam@example.org", "TENTATIVE")
    assert info.organizer is None


def test_parse_outlook_reply_without_method() -> None:
    info = parse_reply(OUTLOOK_REPLY.replace(b"METHOD:REPLY\r\n", b""))
    assert info is not None and info.partstat == "TENTATIVE"


def test_parse_apple_reply_for_one_occurrence() -> None:
    info = parse_reply(APPLE_REPLY)
    assert info is not None
    # The ATTENDEE is a urn:uuid; its EMAIL parameter gives the address.
    assert (info.attendee, info.partstat, info.sequence) == ("li@example.net", "DECLINED", 4)
    # Lisbon is on UTC+0 until the last Sunday of March.
    assert info.recurrence_id == "2026-03-21T19:00:00+00:00"
    assert info.organizer == "calendar@gw.example.org"


def test_parse_reply_from_decoded_text() -> None:
    assert parse_reply(GOOGLE_REPLY.decode()) == parse_reply(GOOGLE_REPLY)


def _attendees(*lines: str) -> bytes:
    """GOOGLE_REPLY with its ATTENDEE replaced by ``lines``."""
    head, _, rest = GOOGLE_REPLY.partition(b"ATTENDEE;")
    _, _, tail = rest.partition(b"COMMENT:")
    return head + "".join(f"{line}\r\n" for line in lines).encode() + b"COMMENT:" + tail


def test_parse_reply_picks_the_answering_attendee() -> None:
    extra = b"ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:other@example.org\r\nCOMMENT"
    info = parse_reply(GOOGLE_REPLY.replace(b"COMMENT", extra, 1))
    assert info is not None and info.attendee == "zoe@example.com"
    ics = _attendees(
        "ATTENDEE:mailto:other@example.org", "ATTENDEE;PARTSTAT=DECLINED:mailto:li@example.net"
    )
    info = parse_reply(ics)
    assert info is not None and (info.attendee, info.partstat) == ("li@example.net", "DECLINED")


def test_parse_reply_prefers_the_sender_among_several_attendees() -> None:
    ics = _attendees(
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:ana@example.org",
        "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:Li@Example.net",
    )
    info = parse_reply(ics, " LI@example.NET ")
    assert info is not None and (info.attendee, info.partstat) == ("li@example.net", "NEEDS-ACTION")
    info = parse_reply(ics, "someone@else.example")
    assert info is not None and info.attendee == "ana@example.org"


def test_parse_reply_with_several_answers_and_none_from_the_sender_is_ambiguous() -> None:
    ics = _attendees(
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:ana@example.org",
        "ATTENDEE;PARTSTAT=DECLINED:mailto:li@example.net",
    )
    assert parse_reply(ics) is None
    assert parse_reply(ics, "someone@else.example") is None
    info = parse_reply(ics, "li@example.net")
    assert info is not None and info.partstat == "DECLINED"


def test_parse_reply_single_attendee_from_an_alias() -> None:
    """The one ATTENDEE counts whoever sent the mail; routing may match either address."""
    info = parse_reply(GOOGLE_REPLY, "zoe.work@example.net")
    assert info is not None and info.attendee == "zoe@example.com"


def test_parse_reply_attendee_without_an_address() -> None:
    """The answer still counts (the sender routes it); only the attendee address is unknown."""
    ics = _attendees("ATTENDEE;PARTSTAT=ACCEPTED:urn:uuid:00000000-0000-0000-0000-000000000017")
    info = parse_reply(ics, "zoe@example.com")
    assert info is not None and (info.attendee, info.partstat) == (None, "ACCEPTED")


def test_parse_reply_partstat_defaults_and_case() -> None:
    info = parse_reply(_attendees("ATTENDEE:mailto:zoe@example.com"))
    assert info is not None and info.partstat == "NEEDS-ACTION"
    info = parse_reply(_attendees("ATTENDEE;PARTSTAT= delegated :mailto:zoe@example.com"))
    assert info is not None and info.partstat == "DELEGATED"


def test_parse_reply_unreadable_sequence_is_unknown() -> None:
    for value in (b"SEQUENCE:soon", b"SEQUENCE:-1"):
        info = parse_reply(GOOGLE_REPLY.replace(b"SEQUENCE:2", value))
        assert info is not None and info.sequence is None


def test_parse_reply_takes_the_first_usable_event() -> None:
    first, _, rest = APPLE_REPLY.partition(b"BEGIN:VEVENT")
    broken = b"BEGIN:VEVENT\r\nUID:crew-17@gw.example.org\r\nEND:VEVENT\r\n"
    info = parse_reply(first + broken + b"BEGIN:VEVENT" + rest)
    assert info is not None and info.attendee == "li@example.net"


@pytest.mark.parametrize(
    "ics",
    [
        b"",
        b"garbage",
        b"\xff\xfe\x00BEGIN",
        b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        b"BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nEND:VCALENDAR\r\n",
        b"BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n",
        GOOGLE_REPLY.replace(b"METHOD:REPLY", b"METHOD:REQUEST"),
        GOOGLE_REPLY.replace(b"METHOD:REPLY", b"METHOD:COUNTER"),
        GOOGLE_REPLY.replace(b"UID:", b"X-UID:"),
        GOOGLE_REPLY.replace(b"PARTSTAT=ACCEPTED", b"PARTSTAT=X-MAYBE"),
        GOOGLE_REPLY.replace(b"PARTSTAT=ACCEPTED", b"PARTSTAT=COMPLETED"),  # VTODO only
        _attendees(),
        GOOGLE_REPLY[: len(GOOGLE_REPLY) // 2],
        APPLE_REPLY.replace(
            b"RECURRENCE-ID;TZID=Europe/Lisbon:20260321T190000", b"RECURRENCE-ID:next week"
        ),
        # Without METHOD: exactly one VEVENT with exactly one ATTENDEE that has PARTSTAT.
        OUTLOOK_REPLY.replace(b"METHOD:REPLY\r\n", b"").replace(b"PARTSTAT=tentative;", b""),
        _attendees(
            "ATTENDEE;PARTSTAT=ACCEPTED:mailto:zoe@example.com",
            "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:li@example.net",
        ).replace(b"METHOD:REPLY\r\n", b""),
        OUTLOOK_REPLY.replace(b"METHOD:REPLY\r\n", b"").replace(
            b"END:VEVENT\r\n", b"END:VEVENT\r\nBEGIN:VEVENT\r\nUID:y\r\nEND:VEVENT\r\n"
        ),
        build_request(crew_call_lisbon(), dtstamp=DTSTAMP),
        build_cancel(replace(crew_call_lisbon(), sequence=1), dtstamp=DTSTAMP),
    ],
)
def test_parse_reply_rejects(ics: bytes) -> None:
    assert parse_reply(ics) is None


@given(st.binary(max_size=400), st.none() | st.text(max_size=20))
def test_parse_reply_never_raises_on_bytes(ics: bytes, sender: str | None) -> None:
    parse_reply(ics, sender)


@given(st.text(max_size=400))
def test_parse_reply_never_raises_on_text(ics: str) -> None:
    parse_reply(ics)


@given(
    st.lists(
        st.sampled_from(GOOGLE_REPLY.split(b"\r\n") + APPLE_REPLY.split(b"\r\n")), max_size=30
    ),
    st.sampled_from([None, "zoe@example.com", "li@example.net"]),
)
def test_parse_reply_never_raises_on_shuffled_lines(lines: list[bytes], sender: str | None) -> None:
    parse_reply(b"\r\n".join(lines), sender)

"""VTIMEZONE components (RFC 5545 section 3.6.5) computed from the zone database.

Computing one takes milliseconds (a day-by-day scan for offset changes), and every
invitation of a gathering needs the same one, so the serialised form is cached per
(zone, span): a fan-out of a thousand invites computes it once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@lru_cache(maxsize=64)
def vtimezone_ics(tzid: str, first_year: int, last_year: int) -> str:
    """``vtimezone(...)`` serialised with CRLF line ends; pure, so safe to cache."""
    return bytes(vtimezone(tzid, first_year, last_year).to_ical()).decode()


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

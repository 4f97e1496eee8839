"""Times as the gathering file means them: naive values are local time at the venue."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo


def zone_time(value: date | datetime, zone: ZoneInfo) -> datetime:
    """A config date or datetime as an aware datetime in the gathering's zone.

    Naive datetimes in the gathering file mean local time at the venue; a date means its
    midnight there.
    """
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=zone)
    return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(zone)

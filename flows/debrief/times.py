"""When a debrief asks, reminds and closes, from the gathering file. Pure.

The prompt goes out `after_end_hours` after the gathering ends, at the next `local_hour` in
the gathering's time zone (nobody wants a reflection question at 3 a.m.); reminders follow
`remind_every_days` apart at the same hour, and only those before the deadline are sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flows.common.times import zone_time
from flows.config import DebriefConfig, GatheringConfig

#: Timer names of the gathering-level run (reminders are "remind.1", "remind.2", …).
PROMPT = "prompt"
REMIND = "remind"
CLOSE = "close"


def ends_at(gathering: GatheringConfig) -> datetime:
    """The moment the gathering is over: an all-day gathering ends at its last midnight."""
    end = zone_time(gathering.ends, gathering.zone)
    return end + timedelta(days=1) if gathering.all_day else end


def at_local_hour(moment: datetime, hour: int) -> datetime:
    """The first `hour`:00 at or after `moment`, in `moment`'s zone."""
    candidate = moment.replace(hour=hour, minute=0, second=0, microsecond=0)
    return candidate if candidate >= moment else candidate + timedelta(days=1)


def prompt_at(gathering: GatheringConfig, debrief: DebriefConfig) -> datetime:
    after = ends_at(gathering) + timedelta(hours=debrief.after_end_hours)
    return at_local_hour(after, debrief.local_hour)


def deadline(gathering: GatheringConfig, debrief: DebriefConfig) -> datetime:
    return prompt_at(gathering, debrief) + timedelta(days=debrief.answer_days)


def reminders(gathering: GatheringConfig, debrief: DebriefConfig) -> dict[str, datetime]:
    """Reminder timers by name, each before the deadline."""
    first = prompt_at(gathering, debrief)
    due = {
        f"{REMIND}.{n}": first + timedelta(days=debrief.remind_every_days * n)
        for n in range(1, debrief.reminders + 1)
    }
    return {name: at for name, at in due.items() if at < deadline(gathering, debrief)}

"""The travel questions, asked through the shared questionnaire, and reading the answers.

The questions are the flow's own (not the gathering file's), so matching can rely on them;
the dates in the prompts come from the gathering. Where registration asked for a city, that
answer is the default origin. An origin is looked up offline (`flows.travel.places`): a town
that is not known is asked again with suggestions, and same-named towns are asked apart with
one more question ("Which Valencia?") whose options are the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from flows.common.forms import Problem
from flows.common.times import zone_time
from flows.config import GatheringConfig, Question, QuestionType, ShowIf, TravelConfig
from flows.travel.places import Ambiguous, Found, NotFound, Town, find_town, label
from flows.travel.state import Origin, TravelRun


class Mode(StrEnum):
    DRIVE = "I drive and can offer seats"
    RIDE = "I need a ride"
    COMPANY = "I'd like company on the train or bus"
    ALONE = "I travel on my own"


MODES = [m.value for m in Mode]
PICK = "origin_pick"


def config(gathering: GatheringConfig) -> TravelConfig:
    assert gathering.travel is not None
    return gathering.travel


def first_day(gathering: GatheringConfig) -> date:
    return zone_time(gathering.starts, gathering.zone).date()


def last_day(gathering: GatheringConfig) -> date:
    return zone_time(gathering.ends, gathering.zone).date()


def questions(gathering: GatheringConfig, data: TravelRun) -> list[Question]:
    """This person's travel questions; "which one?" only while their town is ambiguous."""
    going = ShowIf(question="mode", any_of=[Mode.DRIVE, Mode.RIDE, Mode.COMPANY])
    car = ShowIf(question="mode", any_of=[Mode.DRIVE, Mode.RIDE])
    drive = ShowIf(question="mode", equals=Mode.DRIVE)
    there = first_day(gathering).strftime("%A %d %B")
    back = last_day(gathering).strftime("%A %d %B")
    asked = [
        Question(
            id="mode",
            type=QuestionType.SINGLE_CHOICE,
            prompt="How will you travel to the gathering?",
            options=MODES,
        ),
        Question(
            id="origin",
            type=QuestionType.CITY,
            prompt="Which town or village will you leave from?",
            show_if=going,
        ),
    ]
    candidates = data.origin_candidates
    if candidates:
        asked.append(
            Question(
                id=PICK,
                type=QuestionType.SINGLE_CHOICE,
                prompt=f"Which {candidates[0].name} do you mean?",
                options=[c.label for c in candidates],
                show_if=going,
            )
        )
    asked += [
        Question(
            id="leave_from",
            type=QuestionType.TIME,
            prompt=f"On {there}, from what time can you leave?",
            show_if=going,
        ),
        Question(
            id="leave_until", type=QuestionType.TIME, prompt="…and at the latest?", show_if=going
        ),
        Question(
            id="seats",
            type=QuestionType.NUMBER,
            prompt="How many free seats do you have?",
            min=1,
            max=8,
            show_if=drive,
        ),
        Question(
            id="detour",
            type=QuestionType.NUMBER,
            prompt="How many minutes out of your way would you drive at most?",
            help="Skip to let us keep it to 45 minutes, or a third of your trip if that is less.",
            min=0,
            max=120,
            required=False,
            show_if=drive,
        ),
    ]
    if config(gathering).way_back:
        asked += [
            Question(
                id="back_from",
                type=QuestionType.TIME,
                prompt=f"On the way home, {back}: from what time can you leave?",
                required=False,
                show_if=car,
            ),
            Question(
                id="back_until",
                type=QuestionType.TIME,
                prompt="…and at the latest?",
                required=False,
                show_if=car,
            ),
        ]
    asked += [
        Question(
            id="share_contact",
            type=QuestionType.YES_NO,
            prompt="When you and a travel partner have both said yes, may we give them"
            " your email address or Matrix id?",
            show_if=going,
        ),
        Question(
            id="notes",
            type=QuestionType.TEXT,
            prompt="Anything your travel partners should know (luggage, children, access needs)?",
            required=False,
            max_length=500,
            show_if=going,
        ),
    ]
    return asked


def check_origin(
    gathering: GatheringConfig, data: TravelRun, question: Question, value: Any
) -> Problem | None:
    """Look the origin up; remember the town, or the candidates to ask apart."""
    if question.id == PICK and value is not None:
        chosen = next((c for c in data.origin_candidates or [] if c.label == value), None)
        if chosen is not None:
            data.origin_town = chosen
        return None
    if question.id != "origin" or not isinstance(value, str):
        return None
    found = find_town(value, countries=config(gathering).countries)
    data.origin_candidates = None
    data.answers.pop(PICK, None)
    if isinstance(found, Found):
        data.origin_town = town_record(found.town)
        return None
    if isinstance(found, Ambiguous):
        data.origin_town = None
        data.origin_candidates = [town_record(t) for t in found.candidates]
        return None
    assert isinstance(found, NotFound)
    return Problem(
        "town_unknown", {"answer": value, "suggestions": [label(t) for t in found.suggestions]}
    )


def town_record(town: Town) -> Origin:
    return Origin(
        id=town.geonameid,
        label=label(town),
        name=town.name,
        lat=town.latitude,
        lon=town.longitude,
    )


def minutes_of_day(day: date, hhmm: str, gathering: GatheringConfig, epoch: datetime) -> int:
    """ "14:30" on `day` at the venue, as minutes since `epoch` (the matching's clock)."""
    hour, minute = (int(p) for p in hhmm.split(":"))
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=gathering.zone)
    return int((moment - epoch).total_seconds() // 60)


def window(
    answers: Mapping[str, Any], start: str, end: str, default: Sequence[str]
) -> tuple[str, str]:
    """A window from two answers (in either order), or the default."""
    a, b = answers.get(start) or default[0], answers.get(end) or default[1]
    return (a, b) if a <= b else (b, a)

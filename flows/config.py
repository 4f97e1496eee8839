"""The gathering file: what organisers write in TOML, validated by pydantic.

Everything is `extra="forbid"` so a typo ("capacityy") is an error with its key path rather
than a silently ignored setting. Answers are stored by question `id`, never by position, so
an organiser may reorder, add or reword questions while people are answering.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuestionType(StrEnum):
    TEXT = "text"
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    YES_NO = "yes_no"
    NUMBER = "number"
    DATE = "date"
    EMAIL = "email"
    CITY = "city"
    #: A whole number on a scale, 1–5 unless `min`/`max` say otherwise (debrief ratings).
    SCALE = "scale"
    #: A time of day, "14:30" (departure windows).
    TIME = "time"


#: Answers longer than this are refused with the limit, not stored: an answer is repeated in
#: summaries, crew introductions and exports, and a 60 KB one made a Matrix summary too big
#: to send. Free text gets room for a paragraph or two; everything else is one short line.
DEFAULT_MAX_LENGTH = {"text": 2000, "city": 100, "email": 254}
SHORT_ANSWER_LENGTH = 200


class ShowIf(Strict):
    """Ask a question only when an earlier answer matches."""

    question: str
    equals: str | int | bool | None = None
    any_of: list[str] | None = None
    answered: bool | None = None


class Question(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
    type: QuestionType
    prompt: str
    help: str = ""
    required: bool = True
    options: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    show_if: ShowIf | None = None
    #: The longest answer accepted, in characters (default by type: DEFAULT_MAX_LENGTH).
    max_length: Annotated[int, Field(ge=1, le=20_000)] | None = None
    #: Whether this answer may be shown to crewmates or travel partners (with consent).
    shareable: bool = False

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The smallest and largest answer of a number or scale question."""
        if self.type == QuestionType.SCALE:
            return (1 if self.min is None else self.min, 5 if self.max is None else self.max)
        return self.min, self.max

    @property
    def answer_limit(self) -> int:
        """The longest answer accepted for this question, in characters."""
        if self.max_length is not None:
            return self.max_length
        return DEFAULT_MAX_LENGTH.get(self.type.value, SHORT_ANSWER_LENGTH)

    @model_validator(mode="after")
    def _options_match_type(self) -> Question:
        choice = self.type in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE)
        if choice and len(self.options) < 2:
            raise ValueError(f"a {self.type.value} question needs at least 2 options")
        if not choice and self.options:
            raise ValueError(f"options are only allowed for choice questions, not {self.type}")
        numeric = (QuestionType.NUMBER, QuestionType.SCALE)
        if (self.min is not None or self.max is not None) and self.type not in numeric:
            raise ValueError("min/max are only allowed for number and scale questions")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


def check_questions(questions: list[Question]) -> list[Question]:
    """Ids unique; a `show_if` names an earlier question."""
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise ValueError(f"question id {q.id!r} is used twice")
        if q.show_if is not None and q.show_if.question not in seen:
            raise ValueError(
                f"question {q.id!r}: show_if refers to {q.show_if.question!r}, "
                "which is not an earlier question"
            )
        seen.add(q.id)
    return questions


class RegistrationConfig(Strict):
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    #: How long a freed seat is held for the next person on the waiting list.
    hold_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 48
    waiting_list: bool = True
    questions: list[Question] = Field(default_factory=list)
    #: The question whose answer is how the person is named to others (crew introductions);
    #: by default the question with the id "name", if there is one, else the name their
    #: mail client or Matrix profile shows.
    name_question: str | None = None

    @model_validator(mode="after")
    def _name_question_exists(self) -> RegistrationConfig:
        if self.name_question is not None and all(
            q.id != self.name_question for q in self.questions
        ):
            raise ValueError(f"name_question {self.name_question!r} is not a question id")
        return self

    @property
    def chosen_name_question(self) -> str | None:
        """The id of the question that names the person, if any."""
        if self.name_question is not None:
            return self.name_question
        return "name" if any(q.id == "name" for q in self.questions) else None

    _questions = field_validator("questions")(lambda cls, qs: check_questions(qs))

    @property
    def hold(self) -> timedelta:
        return timedelta(hours=self.hold_hours)


class BalanceMode(StrEnum):
    SPREAD = "spread"
    CLUSTER = "cluster"


class CrewCriterion(Strict):
    """Which registration answer feeds which crew criterion."""

    question: str
    mode: BalanceMode = BalanceMode.SPREAD
    weight: Annotated[float, Field(ge=0)] = 1.0


class CrewsConfig(Strict):
    min_size: Annotated[int, Field(ge=2)] = 4
    max_size: Annotated[int, Field(ge=2)] = 8
    target_size: int | None = None
    crews: Annotated[int, Field(ge=1)] | None = None
    #: Question ids whose answers feed the solver.
    language_question: str | None = None
    together_question: str | None = None
    apart_question: str | None = None
    facilitator_question: str | None = None
    #: A yes/no question: "may your crewmates see your shareable answers?". Without it, or
    #: without a yes, crewmates see only the person's display name.
    consent_question: str | None = None
    one_facilitator_per_crew: bool = False
    balance: list[CrewCriterion] = Field(default_factory=list)
    together_weight: Annotated[float, Field(ge=0)] = 10.0
    repeat_weight: Annotated[float, Field(ge=0)] = 3.0
    travel_weight: Annotated[float, Field(ge=0)] = 1.0
    solve_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    #: When crews are introduced and crew calls start (optional).
    announce_at: datetime | None = None
    call_weekday: Literal["MO", "TU", "WE", "TH", "FR", "SA", "SU"] | None = None
    call_time: str | None = None
    call_minutes: Annotated[int, Field(ge=15, le=240)] = 60
    call_count: Annotated[int, Field(ge=1, le=52)] = 6

    @model_validator(mode="after")
    def _sizes(self) -> CrewsConfig:
        if self.min_size > self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) is greater than max_size ({self.max_size})"
            )
        if self.target_size is not None and not self.min_size <= self.target_size <= self.max_size:
            raise ValueError("target_size must lie between min_size and max_size")
        if self.call_time is not None and not re.fullmatch(r"[0-2]\d:[0-5]\d", self.call_time):
            raise ValueError("call_time must look like 19:30")
        return self


class DebriefConfig(Strict):
    """Reflection questions after the gathering, with reminders and a deadline."""

    #: The prompts go out this long after the gathering ends, at the next `local_hour`.
    after_end_hours: Annotated[float, Field(ge=0, le=24 * 60)] = 12
    #: The hour of the day (in the gathering's time zone) prompts and reminders are sent at.
    local_hour: Annotated[int, Field(ge=0, le=23)] = 10
    #: How long people have to answer, from the prompt.
    answer_days: Annotated[float, Field(gt=0, le=90)] = 7
    #: Reminders to those who have not finished, `remind_every_days` apart, before the end.
    reminders: Annotated[int, Field(ge=0, le=5)] = 2
    remind_every_days: Annotated[float, Field(gt=0, le=30)] = 2
    #: Offer "my crew" as a way to share answers (only useful when crews were approved).
    crew_sharing: bool = True
    questions: list[Question] = Field(min_length=1)
    #: A debrief question whose answer names people the person would like to stay with:
    #: the next round of crews (`gateway crews round`) takes these as wishes.
    stay_with_question: str | None = None

    @model_validator(mode="after")
    def _stay_with_is_a_question(self) -> DebriefConfig:
        ids = [q.id for q in self.questions]
        if self.stay_with_question is not None and self.stay_with_question not in ids:
            raise ValueError(f"stay_with_question {self.stay_with_question!r} is not a question id")
        return self

    _questions = field_validator("questions")(lambda cls, qs: check_questions(qs))

    @field_validator("questions")
    @classmethod
    def _share_is_ours(cls, questions: list[Question]) -> list[Question]:
        if any(q.id == "share" for q in questions):
            raise ValueError("the question id 'share' is the debrief's own (who may see answers)")
        return questions


class TravelConfig(Strict):
    """Travel sharing: seats offered and wanted, matched by route and time."""

    #: Where the gathering is, as a town the offline lookup knows ("Évora, Portugal").
    venue_town: str
    #: Countries (ISO codes) most participants come from: they settle "Which Valencia?".
    countries: list[str] = Field(default_factory=list)
    #: The travel questions go out this many days before the start…
    ask_days_before: Annotated[float, Field(ge=1, le=120)] = 21
    #: …and proposals this many days before (after the organisers' approval if `review`).
    plan_days_before: Annotated[float, Field(ge=0.5, le=60)] = 7
    review: bool = False
    #: Also match the way home (people give a second window).
    way_back: bool = True
    #: People wanting company on a train or bus are grouped up to this size.
    company_group_size: Annotated[int, Field(ge=2, le=12)] = 4

    @model_validator(mode="after")
    def _order(self) -> TravelConfig:
        if self.plan_days_before >= self.ask_days_before:
            raise ValueError("plan_days_before must be fewer days than ask_days_before")
        return self


class GatheringConfig(Strict):
    """One gathering: its dates, place, capacity and the flows it runs."""

    slug: str
    name: str
    timezone: str = "UTC"
    starts: date | datetime
    ends: date | datetime
    venue: str = ""
    capacity: Annotated[int, Field(ge=1)]
    #: Default language for messages; a person's own language wins when templates exist.
    language: str = "en"
    description: str = ""
    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    crews: CrewsConfig | None = None
    debrief: DebriefConfig | None = None
    travel: TravelConfig | None = None

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("use lower-case letters, digits and dashes, e.g. 'summer-camp'")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/Lisbon')"
            ) from None
        return value

    @model_validator(mode="after")
    def _dates(self) -> GatheringConfig:
        if _as_date(self.ends) < _as_date(self.starts):
            raise ValueError("ends is before starts")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def all_day(self) -> bool:
        return not isinstance(self.starts, datetime)

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.registration.questions if q.id == question_id), None)


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value

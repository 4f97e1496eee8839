"""Simulated participants for the demo and the benchmarks.

A simulated person answers the questions of a gathering the way people write: options by
number or by name, "yes"/"nee", dates in words. They know which question comes next the same
way a person reading the bot's message does — the flow asks the applicable questions in the
gathering file's order — so they follow `flows.common.forms.pending`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from flows.common import forms
from flows.config import Question, QuestionType
from gateway.model import Channel, Identity, InboundKind, InboundMessage

FIRST_NAMES = (
    "Ana",
    "Bruno",
    "Chidi",
    "Dara",
    "Elif",
    "Femi",
    "Greta",
    "Hana",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
    "Mateo",
    "Noor",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sami",
    "Tove",
    "Uma",
    "Vera",
    "Wim",
    "Ximena",
    "Yusuf",
    "Zoe",
)
#: Towns around the demo camp in the Alentejo (the travel chapter matches rides from them).
CITIES = ("Lisbon", "Setúbal", "Évora", "Beja", "Estremoz", "Montemor-o-Novo", "Almada", "Badajoz")


@dataclass
class SimulatedPerson:
    """One participant, reachable on one channel, with their own answers in mind."""

    number: int
    channel: Channel
    rng: random.Random
    answers: dict[str, forms.AnswerValue] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def name(self) -> str:
        first = FIRST_NAMES[self.number % len(FIRST_NAMES)]
        round_ = self.number // len(FIRST_NAMES)
        return f"{first} {round_ + 1}" if round_ else first

    @property
    def identity(self) -> Identity:
        local = f"{self.name.lower().replace(' ', '.')}.{self.number}"
        if self.channel == Channel.MATRIX:
            return Identity.matrix(f"@{local.replace('.', '-')}:demo.test", self.name)
        return Identity.email(f"{local}@demo.test", self.name)

    def says(self, text: str, *, at: datetime | None = None) -> InboundMessage:
        return InboundMessage(
            channel=self.channel,
            external_id=f"sim-{self.number}-{next(self._ids)}",
            kind=InboundKind.TEXT,
            received_at=at or datetime.now(UTC),
            sender=self.identity,
            text=text,
        )

    def next_answer(self, questions: Sequence[Question], reference: date) -> str | None:
        """The text answering the next applicable question, or None when all are answered."""
        todo = forms.pending(questions, self.answers)
        if not todo:
            return None
        question = todo[0]
        text = answer_text(question, self.rng, reference, self)
        parsed = forms.parse_answer(question, text, reference=reference)
        self.answers[question.id] = parsed.value
        return text


def answer_text(
    question: Question, rng: random.Random, reference: date, person: SimulatedPerson
) -> str:
    """A plausible answer as a person would type it."""
    kind = question.type
    if kind == QuestionType.TEXT:
        if "name" in question.id:
            return person.name.split()[0]
        return (
            rng.choice(("nuts", "nothing special", "-"))
            if not question.required
            else "happy to help"
        )
    if kind == QuestionType.CITY:
        return rng.choice(CITIES)
    if kind == QuestionType.EMAIL:
        return f"friend{rng.randrange(1000)}@example.org"
    if kind == QuestionType.YES_NO:
        return rng.choice(("yes", "no", "ja", "nee", "oui"))
    if kind in (QuestionType.NUMBER, QuestionType.SCALE):
        low_bound, high_bound = question.bounds
        low = int(low_bound if low_bound is not None else 0)
        high = int(high_bound if high_bound is not None else low + 10)
        return str(rng.randint(low, high))
    if kind == QuestionType.TIME:
        return rng.choice(("9:00", "10am", "13h30", "15:00", "17:30"))
    if kind == QuestionType.DATE:
        day = reference - timedelta(days=rng.randint(0, 1))
        return day.isoformat() if rng.random() < 0.5 else f"{day.day} {day.strftime('%B')}"
    if kind == QuestionType.SINGLE_CHOICE:
        pick = rng.randrange(len(question.options))
        return str(pick + 1) if rng.random() < 0.5 else question.options[pick]
    picks = sorted(rng.sample(range(len(question.options)), k=rng.randint(1, 2)))
    return ", ".join(str(p + 1) for p in picks)

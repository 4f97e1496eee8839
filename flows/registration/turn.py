"""One registration step in the making: the person's state, the seats, and what to send.

A `Turn` collects changes while the handlers in `registration.py` and
`registration_seating.py` decide, and turns them into one `Outcome` at the end. A person's
run is a `RegistrationRun`, the gathering's seats are `Seats` (flows/registration/state.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from flows.base import Outcome, StepContext
from flows.common.forms import Answers, AnswerValue, pending
from flows.common.questionnaire import Questionnaire
from flows.common.times import zone_time
from flows.config import Question
from flows.registration.seats import Seats
from flows.registration.state import Note, RegistrationRun, Status
from flows.registration.text import FLOW, say
from gateway.model import Channel, Emit, Invite, PersonId, SetTimer

__all__ = ["ACTIVE", "TRANSITIONS", "InvalidTransition", "Status", "Turn"]

S = Status
#: Which status may follow which; staying in the same status is always allowed. Read with
#: the table in flows/registration/flow.py (what each message does in each status).
TRANSITIONS: dict[Status | None, frozenset[Status]] = {
    None: frozenset({S.IN_PROGRESS}),
    S.IN_PROGRESS: frozenset({S.CONFIRMING, S.CANCELLED}),
    S.CONFIRMING: frozenset({S.IN_PROGRESS, S.REGISTERED, S.WAITING, S.CANCELLED}),
    S.REGISTERED: frozenset({S.CANCELLED}),
    S.WAITING: frozenset({S.OFFERED, S.CANCELLED}),
    S.OFFERED: frozenset({S.REGISTERED, S.CANCELLED}),
    S.CANCELLED: frozenset({S.IN_PROGRESS}),
}
#: Statuses in which a person is expected to answer us, so any message of theirs is ours.
ACTIVE = frozenset({S.IN_PROGRESS, S.CONFIRMING, S.OFFERED})


class InvalidTransition(Exception):
    """A step tried a status change the table does not allow (a bug, reported as such)."""


HISTORY_LIMIT = 20


Context = StepContext[RegistrationRun, Seats]


@dataclass
class Turn:
    ctx: Context
    state: RegistrationRun
    #: The state as it came, as JSON: what `finish` compares with (cheaper than a deep copy
    #: on every message, and it compares exactly what would be stored).
    before: str
    outcome: Outcome = field(default_factory=Outcome)
    _seats: Seats | None = None
    _seats_before: tuple[object, ...] = ()
    _form: Questionnaire | None = None

    @classmethod
    def start(cls, ctx: Context) -> Turn:
        # The context's states are the step's own to change.
        return cls(ctx, ctx.state, ctx.state.model_dump_json())

    @property
    def person(self) -> PersonId:
        return self.ctx.person.id

    @property
    def status(self) -> str:
        return self.state.status.value if self.state.status else ""

    @status.setter
    def status(self, value: Status) -> None:
        current = self.state.status
        if value != current and value not in TRANSITIONS[current]:
            raise InvalidTransition(f"registration: {current} → {value}")
        self.state.status = value

    @property
    def questions(self) -> list[Question]:
        return self.ctx.gathering.registration.questions

    @property
    def answers(self) -> dict[str, AnswerValue]:
        return self.state.answers

    @property
    def in_chat(self) -> bool:
        """Matrix people get one question at a time; email people get forms."""
        return self.ctx.person.channel == Channel.MATRIX

    @property
    def reference(self) -> date:
        starts = self.ctx.gathering.starts
        return starts.date() if isinstance(starts, datetime) else starts

    @property
    def seats(self) -> Seats:
        if self._seats is None:
            self._seats = self.ctx.shared
            self._seats_before = self._seats.snapshot()
        return self._seats

    def pending(self, answers: Answers | None = None) -> list[Question]:
        return pending(self.questions, self.answers if answers is None else answers)

    def local(self, moment: datetime) -> datetime:
        """A time as the participant should read it: in the gathering's zone."""
        return zone_time(moment, self.ctx.gathering.zone)

    def say(self, message: str, *, invite: Invite | None = None, **context: Any) -> None:
        out = say(self.person, message, **context)
        self.outcome.send.append(replace(out, invite=invite) if invite else out)

    def note(self, event: str, **detail: Any) -> None:
        history = self.state.history
        history.append(Note(at=self.ctx.now, event=event, **detail))
        del history[:-HISTORY_LIMIT]

    def form(self, on_complete: Callable[[], None]) -> Questionnaire:
        """The registration questions' conversation, kept in this person's state."""
        if self._form is None:
            self._form = Questionnaire(
                questions=self.questions,
                data=self.state,
                message=self.ctx.message,
                person=self.person,
                prefix=FLOW,
                in_chat=self.in_chat,
                reference=self.reference,
                answering=self.status == "in_progress",
                on_complete=on_complete,
                send=self.outcome.send,
            )
        self._form.answering = self.status == "in_progress"
        return self._form

    def offer_seats(self) -> None:
        """Offer every seat that is free now to the head of the waiting list."""
        gathering = self.ctx.gathering
        for person, expires in self.seats.fill(
            gathering.capacity, self.ctx.now, gathering.registration.hold
        ):
            self.outcome.emit.append(
                Emit(
                    flow=FLOW,
                    person=person,
                    name="offer_seat",
                    payload={"expires_at": expires.isoformat()},
                )
            )

    def timer(self, name: str, due_at: datetime) -> None:
        self.outcome.timers.append(SetTimer(name=name, due_at=due_at, person=self.person))

    def finish(self) -> Outcome:
        if self.state.model_dump_json() != self.before:
            self.outcome.state = self.state
            self.outcome.status = self.status or None
        if self._seats is not None and self._seats.snapshot() != self._seats_before:
            self.outcome.shared = self._seats
        return self.outcome

"""What the debrief keeps: a person's run (`DebriefRun`) and the gathering's (`DebriefShared`).

The stored JSON is these fields, at the top level; keys that were never set stay absent.
"""

from __future__ import annotations

from enum import StrEnum

from flows.base import FlowState, Moment, absent
from flows.common.forms import AnswerValue
from flows.common.questionnaire import Conversation
from gateway.model import PersonId


class Status(StrEnum):
    ASKED = "asked"
    ANSWERED = "answered"
    CLOSED = "closed"


class Share(StrEnum):
    """Who may see a person's answers (the first question's options, in this order)."""

    ORGANISERS = "organisers"
    CREW = "crew"
    EVERYONE = "everyone"


class DebriefRun(Conversation):
    """A person's debrief: the questionnaire's fields (`Conversation`) and where it stands.

    At the close, the answers of someone who shared them with everyone leave the run (they
    go to the gathering's pool): only `finished` and `anonymous` stay."""

    status: Status | None = absent()
    #: Every applicable question was answered once (the progress line counts these).
    finished: bool = absent(False)
    #: The answers went to the anonymous pool at the close.
    anonymous: bool = absent(False)


class DebriefShared(FlowState):
    """The gathering-level run: what was done (each once) and the anonymous pool."""

    #: When everyone who came was asked; the people asked.
    prompted: Moment | None = absent()
    asked: list[PersonId] | None = absent()
    #: Names of the reminder timers that went out ("remind.1", …).
    reminded: list[str] | None = absent()
    #: When the deadline closed the debrief.
    closed: Moment | None = absent()
    #: Question id → the answers shared with everyone, sorted, one entry per answer, unlinked.
    anonymous: dict[str, list[AnswerValue]] | None = absent()
    #: How many people's answers are in the pool.
    anonymous_people: int | None = absent()

"""What registration keeps: a person's run (`RegistrationRun`) and the gathering's seats
(`flows.registration.seats.Seats`). The stored JSON is these fields, at the top level."""

from __future__ import annotations

from enum import StrEnum

from flows.base import FlowState, Moment, absent
from flows.common.questionnaire import Conversation


class Status(StrEnum):
    """Where a person's registration stands (mirrored in the run's status column)."""

    IN_PROGRESS = "in_progress"  # answering the questions
    CONFIRMING = "confirming"  # everything answered: the summary waits for "yes"
    REGISTERED = "registered"  # has a seat and a calendar invite
    WAITING = "waiting"  # on the waiting list
    OFFERED = "offered"  # a freed seat is held for them until `offer_expires`
    CANCELLED = "cancelled"  # left: cancelled, offer declined or expired, erased


class Attendance(StrEnum):
    """What the person's calendar answered to the invite."""

    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    DECLINED = "declined"


class Left(StrEnum):
    """Why a run is cancelled."""

    CANCELLED = "cancelled"
    OFFER_EXPIRED = "offer_expired"
    OFFER_DECLINED = "offer_declined"
    ERASED = "erased"


class Note(FlowState):
    """A decision not visible elsewhere (a stale calendar reply, an ignored timer…); its
    details are extra keys, as they vary by event."""

    at: Moment
    event: str


class RegistrationRun(Conversation):
    """A person's registration. The questionnaire's fields (answers, answered_by, asked,
    changing) come from `Conversation`."""

    #: Mirrored in the run's status column; see flows.registration.turn.TRANSITIONS.
    status: Status | None = absent()
    #: True while we wait for "yes" to a cancellation question.
    pending_cancel: bool = absent(False)
    #: The calendar invite sent and its last SEQUENCE.
    invite_uid: str | None = absent()
    sequence: int | None = absent()
    attendance: Attendance | None = absent()
    #: When a held seat offer ends (status "offered").
    offer_expires: Moment | None = absent()
    left: Left | None = absent()
    #: True while we wait for registration to open (a timer is set).
    waiting_open: bool = absent(False)
    #: False once the person said "unsubscribe": the organisers' announcements stop.
    announcements: bool = absent(True)
    #: The last few decisions that are not visible elsewhere.
    history: list[Note] = absent(factory=list)

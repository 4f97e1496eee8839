"""What travel keeps: a person's run (`TravelRun`) and the gathering's (`TravelShared`).

The stored JSON is these fields, at the top level; keys that were never set stay absent.
People are named by their person id as a string, as the matching job names them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from flows.base import FlowState, Moment, absent
from flows.common.questionnaire import Conversation


class PersonStatus(StrEnum):
    """Where a person's travel stands; see the table in flows/travel/flow.py."""

    ASKED = "asked"
    READY = "ready"
    PROPOSED = "proposed"
    WAITING = "waiting"
    INTRODUCED = "introduced"
    ALONE = "alone"
    CHANGING = "changing"
    FORGOTTEN = "forgotten"


class Origin(FlowState):
    """A town a person leaves from (never a street address)."""

    id: int
    label: str
    name: str
    lat: float
    lon: float


class TravelRun(Conversation):
    """A person's travel: the questionnaire's fields (`Conversation`) and where it stands."""

    status: PersonStatus | None = absent()
    #: The status before "change N", restored when the new answer comes.
    was: PersonStatus | None = absent()
    #: The town their origin answer names, once it is known.
    origin_town: Origin | None = absent()
    #: Same-named towns to ask apart ("Which Valencia?").
    origin_candidates: list[Origin] | None = absent()
    #: Ids of the proposals waiting for this person's yes or no.
    pending: list[str] | None = absent()


class Direction(StrEnum):
    TO = "to"
    BACK = "back"


class MatchStatus(StrEnum):
    PROPOSED = "proposed"
    INTRODUCED = "introduced"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


#: A match that is on (its people are told when it is called off).
LIVE = frozenset({MatchStatus.PROPOSED, MatchStatus.INTRODUCED, MatchStatus.CONFIRMED})


class Car(FlowState):
    """One car of a plan, in the matching job's minutes since the plan's epoch."""

    driver: str
    #: In pickup (way there) or drop-off (way back) order, with their stops' times.
    riders: list[str]
    departure: int
    stops: list[int]
    detour: int
    arrival: int | None = absent()


class Side(FlowState):
    """One direction of a plan: its cars and who is not placed, with the reason."""

    cars: list[Car] = Field(default_factory=list)
    unmatched: dict[str, str] = Field(default_factory=dict)


class Plan(FlowState):
    """The matching job's result (flows/travel/matching.py) and the time its minutes count from."""

    to: Side | None = None
    back: Side | None = None
    #: Suggested train or bus groups.
    company: list[list[str]] = Field(default_factory=list)
    epoch: Moment

    def side(self, direction: Direction) -> Side | None:
        return self.to if direction == Direction.TO else self.back


class Match(FlowState):
    """A ride: one driver and one rider, one direction, and both sides' answers."""

    direction: Direction
    driver: str
    rider: str
    departure: int
    arrival: int
    stop: int
    status: MatchStatus
    driver_ok: bool | None = None
    rider_ok: bool | None = None
    #: Who accepted the departure's calendar invite.
    accepted: list[str] | None = absent()


class Company(FlowState):
    """A suggested train or bus group: each member's yes or no."""

    members: list[str]
    answers: dict[str, bool] = Field(default_factory=dict)
    status: MatchStatus


class TravelShared(FlowState):
    """The gathering-level run: asking, planning, and every ride's match."""

    asked_at: Moment | None = absent()
    planned_at: Moment | None = absent()
    #: Why there is no plan (an unknown venue town, a failed job).
    problem: str | None = absent()
    #: The matching job being waited for.
    job: Literal["plan", "replan"] | None = absent()
    plan: Plan | None = absent()
    epoch: Moment | None = absent()
    #: The organisers let proposals go out (with `review`).
    approved: bool = absent(False)
    matches: dict[str, Match] = absent(factory=dict)
    companies: dict[str, Company] = absent(factory=dict)
    #: Pairs [driver, rider] who declined each other, by direction: never proposed again.
    forbidden: dict[Direction, list[list[str]]] = absent(factory=dict)
    #: The last SEQUENCE of each car's departure invite, by "direction:driver".
    sequences: dict[str, int] = absent(factory=dict)

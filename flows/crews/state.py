"""What the crews flow keeps: a member's run (`CrewsRun`) and the gathering's (`CrewsShared`).

The stored JSON is these fields, at the top level. People are named by their person id as a
string (as the solver and the registrations' views name them); crews by their 0-based index
(an object key in JSON, "0"). Keys that were never set stay absent; the approved record and a
solver's proposal are written whole, as they always were.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from flows.base import FlowState, Moment, absent
from flows.crews.solver.model import Status

#: Person (id as a string) → crew index (0-based).
Assignment = dict[str, int]


class Kind(StrEnum):
    """What a proposal is for: the first crews, changes to announced ones, or a new round."""

    INITIAL = "initial"
    REPAIR = "repair"
    ROUND = "round"


class Unmet(FlowState):
    """A together request the proposal could not meet: `a` asked for `b`."""

    a: str
    b: str
    reason: str
    mutual: bool = False


class Proposal(FlowState):
    """Crews waiting for approval: a solver's result (`flows.crews.job.proposal_payload`) with
    what the operation added (`warnings`, `swaps`, and for a repair who joined and left)."""

    kind: Kind
    round: int
    assignment: Assignment
    proposed_at: Moment
    #: Each crew's shared language, by crew index.
    languages: list[str] = Field(default_factory=list)
    status: Status | None = absent()
    objective: int | None = absent()
    #: The objective's terms (`flows.crews.job.TERMS`).
    breakdown: dict[str, int] | None = absent()
    bound: int | None = absent()
    unmet: list[Unmet] | None = absent()
    moved: list[str] | None = absent()
    changed_crews: list[int] | None = absent()
    warnings: list[str] | None = absent()
    #: Swaps from the overrides file this proposal resolved, by their key: person → crew.
    swaps: dict[str, dict[str, int]] | None = absent()
    added: list[str] | None = absent()
    removed: list[str] | None = absent()


class Round(FlowState):
    """A round's approved crews and, once announced, their calls: each crew's first call day
    (None before the announcement; empty when the gathering has no calls), its time zone,
    and the SEQUENCE of its call invite (one up per repair that changed the crew)."""

    round: int
    assignment: Assignment
    languages: list[str]
    crews: int
    announced: bool
    first_call: dict[int, date] | None
    zones: dict[int, str]
    sequences: dict[int, int]


class Approved(Round):
    """The crews approved last (the current round)."""

    approved_at: Moment


class PastRound(FlowState):
    """An earlier round: its approved record (without `approved_at`) and whether its calls
    were cancelled and rooms closed (`ended`, at the next announcement).

    Entries written before rounds were ended hold only `round` and `assignment`, and are
    never ended (there is nothing to end them with)."""

    round: int
    assignment: Assignment
    ended: bool | None = absent()
    languages: list[str] | None = absent()
    crews: int | None = absent()
    announced: bool | None = absent()
    first_call: dict[int, date] | None = absent()
    zones: dict[int, str] | None = absent()
    sequences: dict[int, int] | None = absent()

    def as_round(self) -> Round | None:
        """The record to end, if this entry still needs ending (and can be)."""
        if self.ended is not False or self.crews is None:
            return None
        return Round(
            round=self.round,
            assignment=self.assignment,
            languages=self.languages or [],
            crews=self.crews,
            announced=bool(self.announced),
            first_call=self.first_call,
            zones=self.zones or {},
            sequences=self.sequences or {},
        )


class Solving(FlowState):
    """The solve request being waited for; `restore`: the pins it set, as they were before
    (None: not pinned), put back if it finds no crews."""

    request: int
    kind: Kind
    since: Moment
    restore: dict[str, int | None] = Field(default_factory=dict)


class CrewsShared(FlowState):
    """The gathering-level run: pins, the solve being waited for, the proposal, the approved
    crews, earlier rounds, and each member's answer to their crew call."""

    #: Person → crew index, kept across proposals (written even when empty, as it always was).
    pins: dict[str, int] = Field(default_factory=dict)
    #: Solve requests so far: a newer one supersedes an older one still running.
    requests: int = absent(0)
    solving: Solving | None = absent()
    proposal: Proposal | None = absent()
    approved: Approved | None = absent()
    history: list[PastRound] = absent(factory=list)
    #: Person → PARTSTAT of their answer to the current round's call ("ACCEPTED", …).
    calls: dict[str, str] = absent(factory=dict)


class CrewsRun(FlowState):
    """A member's run: their last answer to a crew call, and the invite UID it named ("" for
    a reaction in the crew's room)."""

    call: str | None = absent()
    uid: str | None = absent()

"""What the crews flow keeps: a member's run (`CrewsRun`) and the gathering's (`CrewsShared`).

The stored JSON is these fields, at the top level. People are named by their person id as a
string (as the solver and the registrations' views name them); crews by their 0-based index
(an object key in JSON, "0").

A key is written when the stored row had it or a step set it, whatever its value (`Kept`):
the flow kept plain dicts before, and wrote `"pins": {}` or `"bound": null` where it set them
and nothing where it did not, so a row loads and writes back as it was. Only what a step
takes away (`solving`, `proposal`: `absent`) leaves the JSON when it is None.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from flows.base import FlowState, Moment, absent
from flows.crews.solver.model import Status

#: Person (id as a string) → crew index (0-based).
Assignment = dict[str, int]


class Kept(FlowState):
    """Writes the keys its row had and those a step set (pydantic's `exclude_unset`), all
    the way down: the shape of the JSON is the shape the steps gave it."""

    def to_stored(self) -> str:
        return self.model_dump_json(exclude_unset=True)


class Kind(StrEnum):
    """What a proposal is for: the first crews, changes to announced ones, or a new round."""

    INITIAL = "initial"
    REPAIR = "repair"
    ROUND = "round"


class Unmet(Kept):
    """A together request the proposal could not meet: `a` asked for `b`."""

    a: str
    b: str
    reason: str
    mutual: bool = False


class Proposal(Kept):
    """Crews waiting for approval: a solver's result (`flows.crews.job.proposal_payload`) with
    what the operation added (`warnings`, `swaps`, and for a repair who joined and left)."""

    kind: Kind
    round: int
    assignment: Assignment
    proposed_at: Moment
    #: Each crew's shared language, by crew index.
    languages: list[str] = Field(default_factory=list)
    status: Status | None = None
    objective: int | None = None
    #: The objective's terms (`flows.crews.job.TERMS`).
    breakdown: dict[str, int] = Field(default_factory=dict)
    bound: int | None = None
    unmet: list[Unmet] = Field(default_factory=list)
    moved: list[str] = Field(default_factory=list)
    changed_crews: list[int] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    #: Swaps from the overrides file this proposal resolved, by their key: person → crew.
    swaps: dict[str, dict[str, int]] = Field(default_factory=dict)
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


class Round(Kept):
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


class PastRound(Kept):
    """An earlier round: its approved record (without `approved_at`) and whether its calls
    were cancelled and rooms closed (`ended`, at the next announcement).

    Entries written before rounds were ended hold only `round` and `assignment`, and are
    never ended (there is nothing to end them with)."""

    round: int
    assignment: Assignment
    ended: bool | None = None
    languages: list[str] = Field(default_factory=list)
    crews: int | None = None
    announced: bool = False
    first_call: dict[int, date] | None = None
    zones: dict[int, str] = Field(default_factory=dict)
    sequences: dict[int, int] = Field(default_factory=dict)

    def as_round(self) -> Round | None:
        """The record to end, if this entry still needs ending (and can be)."""
        if self.ended is not False or self.crews is None:
            return None
        return Round(
            round=self.round,
            assignment=self.assignment,
            languages=self.languages,
            crews=self.crews,
            announced=self.announced,
            first_call=self.first_call,
            zones=self.zones,
            sequences=self.sequences,
        )


class Solving(Kept):
    """The solve request being waited for; `restore`: the pins it set, as they were before
    (None: not pinned), put back if it finds no crews."""

    request: int
    kind: Kind
    since: Moment
    restore: dict[str, int | None] = Field(default_factory=dict)


class CrewsShared(Kept):
    """The gathering-level run: pins, the solve being waited for, the proposal, the approved
    crews, earlier rounds, and each member's answer to their crew call."""

    #: Person → crew index, kept across proposals.
    pins: dict[str, int] = Field(default_factory=dict)
    #: Solve requests so far: a newer one supersedes an older one still running.
    requests: int = 0
    solving: Solving | None = absent()  # taken away when the result comes
    proposal: Proposal | None = absent()  # taken away by its approval
    approved: Approved | None = None
    history: list[PastRound] = Field(default_factory=list)
    #: Person → PARTSTAT of their answer to the current round's call ("ACCEPTED", …).
    calls: dict[str, str] = Field(default_factory=dict)


class CrewsRun(Kept):
    """A member's run: their last answer to a crew call, and the invite UID it named ("" for
    a reaction in the crew's room)."""

    call: str | None = None
    uid: str | None = None

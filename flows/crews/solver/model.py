"""Input and output data for the crew assignment solver.

Crew indexes are 0-based in the Python API. Everything shown to people
(CSV `pinned_crew`, messages, tables) numbers crews from 1, because that is
what organisers write in spreadsheets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class InvalidInput(ValueError):
    """The input itself is malformed (unknown ids, bad numbers), as opposed to infeasible."""


class Mode(StrEnum):
    """How an attribute should be distributed across crews."""

    SPREAD = "spread"  # each crew mirrors the camp: penalise pairs of crewmates sharing a value
    CLUSTER = "cluster"  # crews are homogeneous: penalise each extra distinct value in a crew


class Status(StrEnum):
    OPTIMAL = "optimal"  # proven optimal by CP-SAT
    FEASIBLE = "feasible"  # valid, optimality not proven
    INFEASIBLE = "infeasible"  # proven that no valid assignment exists
    UNKNOWN = "unknown"  # no valid assignment found in the budget, none proven impossible


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    languages: frozenset[str]
    facilitator: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttributeRule:
    """Soft balance criterion on one categorical attribute (weight per unit of cost)."""

    name: str
    mode: Mode = Mode.SPREAD
    weight: int = 1


@dataclass(frozen=True)
class PastPair:
    """Two people who were crewmates before; `weight` encodes recency (higher = more recent)."""

    a: str
    b: str
    weight: int = 1


@dataclass(frozen=True)
class Sizing:
    """Crew sizes. Give `n_crews`, or `target_size`, or only bounds (the solver picks the count).

    With `n_crews` alone the bounds default to floor/ceil of people / crews.
    """

    min_size: int | None = 4
    max_size: int | None = 8
    target_size: int | None = None
    n_crews: int | None = None


@dataclass(frozen=True)
class Weights:
    """Integer weights so that CP-SAT and local search optimise exactly the same number."""

    together: int = 10  # per requested pair left apart
    repeat: int = 4  # per unit of past-pair recency weight, when the pair meets again
    travel: int = 3  # per extra crew a travel group is split over
    move: int = 30  # per person not in their `previous` crew (re-runs, repairs)
    # Per pair of crewmates beyond an even split of the camp: crews of 5 and 7 cost 1 more
    # than two of 6, so sizes stay near the target unless something else pays for it.
    size: int = 2


@dataclass(frozen=True)
class SolverInput:
    people: tuple[Person, ...]
    sizing: Sizing = Sizing()
    # Pairs or small groups that want one crew; the first of each is the one who asked.
    together: tuple[tuple[str, ...], ...] = ()
    not_with: tuple[tuple[str, str], ...] = ()
    pins: Mapping[str, int] = field(default_factory=dict)  # person id -> crew index
    require_facilitator: bool = True
    attributes: tuple[AttributeRule, ...] = ()
    past_pairs: tuple[PastPair, ...] = ()
    travel_attribute: str | None = "travel_group"
    previous: Mapping[str, int] | None = None  # earlier assignment: moving away costs `move`
    weights: Weights = Weights()


@dataclass(frozen=True)
class SolveOptions:
    time_budget: float = 10.0  # seconds of wall time: used up unless optimality is proven
    seed: int = 0
    # At or below this many people one CP-SAT model is solved and usually proved optimal
    # (generated camps of 30: most within 5 s). Above it, construction + local search +
    # CP-SAT on a few crews at a time: measured with 10 s on generated camps of 40-120 the
    # whole-camp model proves nothing (lower bound 4-10 against answers of 13-53) and, past
    # 100 people, ends far above the answer it was hinted with; see bench/crews.py.
    exact_max_people: int = 32
    workers: int = 2
    # Stop rules based on work done rather than wall time, so one seed gives one answer
    # whenever the run finishes inside `time_budget` (always on small camps). Such runs
    # stop when their work is done, often well inside the budget; the default spends it.
    deterministic: bool = False


@dataclass(frozen=True)
class Breakdown:
    """Objective split by term; `total` is what every engine minimises."""

    together: int
    balance: int
    repeat: int
    travel: int
    moves: int
    size: int = 0

    @property
    def total(self) -> int:
        return self.together + self.balance + self.repeat + self.travel + self.moves + self.size


@dataclass(frozen=True)
class Crew:
    index: int
    language: str
    members: tuple[str, ...]
    cost: int  # this crew's share of the objective, used to name the worst crew


@dataclass(frozen=True)
class UnmetRequest:
    a: str  # who asked
    b: str  # whom they asked for
    reason: str
    mutual: bool = False  # b asked for a too


@dataclass(frozen=True)
class SolveResult:
    status: Status
    assignment: Mapping[str, int]  # person id -> crew index; empty unless valid
    crews: tuple[Crew, ...]
    breakdown: Breakdown | None
    bound: int | None  # best proven lower bound on the objective, when known
    worst_crew: int | None
    unmet: tuple[UnmetRequest, ...]
    reasons: tuple[str, ...]  # human sentences explaining infeasibility
    elapsed: float
    changed_crews: tuple[int, ...] = ()  # for repairs: crews whose membership changed
    moved: tuple[str, ...] = ()  # for repairs and re-runs: people whose crew changed
    requests: int = 0  # together requests (pairs), met or not

    @property
    def valid(self) -> bool:
        return self.status in (Status.OPTIMAL, Status.FEASIBLE)

    @property
    def objective(self) -> int | None:
        return None if self.breakdown is None else self.breakdown.total

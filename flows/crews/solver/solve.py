"""Crew assignment: split a camp into small peer groups under hard and soft criteria.

Entry points: `solve`, `repair` (minimal change after approval), `round_pairs`
(avoid last round's crewmates), `load_people_csv` and `render_table`.

Every run starts from a deterministic construction (`build`), or the previous assignment
when it is still valid, and spends its budget unless optimality is proven. Engines by
size: up to `SolveOptions.exact_max_people` (32) one CP-SAT model, hinted with a locally
optimised first answer, usually proves optimality. Above it, late-acceptance local search,
then large-neighbourhood search that re-solves a few crews at a time exactly (`lns`): 2 by
scoring every split of them at once (`pair`), then 3 with CP-SAT. The last tenth of the
budget re-solves the crews around each unmet together request (`wishes`), which also
yields the reasons printed for the requests that stay unmet.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence

from flows.crews.solver import cpsat, lns, wishes
from flows.crews.solver.build import construct
from flows.crews.solver.csv_input import CsvError, load_people_csv
from flows.crews.solver.explain import build_result, failed_result, render_table
from flows.crews.solver.feasibility import diagnose, explain_with_cpsat
from flows.crews.solver.local import Progress, State, local_search
from flows.crews.solver.model import (
    AttributeRule,
    Breakdown,
    Crew,
    InvalidInput,
    Mode,
    PastPair,
    Person,
    Sizing,
    SolveOptions,
    SolveResult,
    SolverInput,
    Status,
    UnmetRequest,
    Weights,
)
from flows.crews.solver.pair import MAX_PEOPLE as MAX_PAIR_PEOPLE
from flows.crews.solver.problem import Problem, compile_problem, evaluate, violations
from flows.crews.solver.repair import repair

__all__ = [
    "AttributeRule",
    "Breakdown",
    "Crew",
    "CsvError",
    "InvalidInput",
    "Mode",
    "PastPair",
    "Person",
    "Progress",
    "SolveOptions",
    "SolveResult",
    "SolverInput",
    "Sizing",
    "Status",
    "UnmetRequest",
    "Weights",
    "load_people_csv",
    "render_table",
    "repair",
    "round_pairs",
    "solve",
]

ITERS_PER_SECOND = 100_000  # local-search work budget per second of time budget
# On large camps local search only takes the greedy answer's easy gains: re-solving
# pairs of crews improves it far faster (2,000 people: 3,850 -> 1,100 in 2 s, where local
# search needs 15 s to reach 2,300).
LS_SHARE = 0.05
LS_SHARE_NO_PAIRS = 0.6  # crews too large for pair re-solves: local search, then CP-SAT
HINT_SHARE = 0.3
# The end of the budget goes to together requests one at a time (`wishes.wish_pass`): a
# request can need three or four crews re-solved at once, which neither local search nor
# pair re-solves reach, and the verdicts left behind explain the requests still unmet.
WISH_SHARE = 0.1
MIN_ROUND_SECONDS = 0.2  # budget left below which another search round is not started


def round_pairs(
    assignment: Mapping[str, int], together: Iterable[Sequence[str]] = (), weight: int = 10
) -> tuple[PastPair, ...]:
    """Pairs who shared a crew in `assignment`, except pairs who asked to stay together;
    pass them as `past_pairs` so the next round mixes people."""
    keep = {frozenset((a, b)) for g in together for a in g for b in g if a != b}
    by_crew: dict[int, list[str]] = {}
    for pid, c in sorted(assignment.items()):
        by_crew.setdefault(c, []).append(pid)
    return tuple(
        PastPair(a, b, weight)
        for members in by_crew.values()
        for x, a in enumerate(members)
        for b in members[x + 1 :]
        if frozenset((a, b)) not in keep
    )


def solve(
    inp: SolverInput, options: SolveOptions = SolveOptions(), progress: Progress | None = None
) -> SolveResult:
    """Best assignment found within `options.time_budget` seconds, or why none exists."""
    t0 = time.monotonic()
    pb = compile_problem(inp)
    reasons = diagnose(pb)
    if reasons:
        return failed_result(Status.INFEASIBLE, reasons, time.monotonic() - t0)
    rng = random.Random(options.seed)
    deadline = t0 + options.time_budget
    search_until = deadline - (WISH_SHARE * options.time_budget if pb.wishes else 0.0)
    start = _start(pb)
    if start is None:
        # The construction only fails on tight camps; CP-SAT then finds a first answer or
        # proves there is none, with the whole budget if it needs it.
        found = cpsat.solve(
            cpsat.build(pb, range(pb.n), range(pb.k), objective=False),
            pb,
            deadline - time.monotonic(),
            options.seed,
            options.workers,
            options.deterministic,
        )
        if found.status == "infeasible":
            return _infeasible(pb, deadline, t0)
        if found.crew_of is None:
            return failed_result(
                Status.UNKNOWN,
                ["no valid assignment found within the time budget, and none proven impossible"],
                time.monotonic() - t0,
            )
        start = found.crew_of
    if pb.n <= options.exact_max_people:
        start = _polish(pb, start, rng, options, search_until, progress, t0, exact=True)
        best, status, bound = _solve_exact(pb, start, options, search_until, progress, t0)
    else:
        best = _polish(pb, start, rng, options, search_until, progress, t0, exact=False)
        status, bound = Status.FEASIBLE, None
    if status is Status.OPTIMAL:  # nothing can improve: the pass only explains what is unmet
        _, verdicts = wishes.wish_pass(pb, best, deadline, options.seed, True)
        return _finish(pb, best, status, bound, t0, verdicts)
    # Above the exact size, search and wish pass take turns until the budget is spent: the
    # pass ends early when few requests are unmet, and what it changes opens new moves.
    large = pb.n > options.exact_max_people
    while True:
        if large:
            best = lns.search(
                pb,
                best,
                rng,
                options.time_budget,
                options.deterministic,
                search_until,
                progress,
                t0,
            )
        before = evaluate(pb, best).total
        best, verdicts = wishes.wish_pass(pb, best, deadline, options.seed, options.deterministic)
        after = evaluate(pb, best).total
        if progress is not None and after < before:
            progress(time.monotonic() - t0, after)
        left = deadline - time.monotonic()
        if options.deterministic or not large or left < MIN_ROUND_SECONDS or after == 0:
            return _finish(pb, best, status, bound, t0, verdicts)
        search_until = deadline - (WISH_SHARE * left if pb.wishes else 0.0)


def _start(pb: Problem) -> list[int] | None:
    """Previous assignment when still valid (so re-runs start from it), else a built one."""
    prev = list(pb.previous)
    if all(c >= 0 for c in prev) and not violations(pb, prev):
        return prev
    built = construct(pb)
    return built if built is not None and not violations(pb, built) else None


def _polish(
    pb: Problem,
    start: list[int],
    rng: random.Random,
    options: SolveOptions,
    deadline: float,
    progress: Progress | None,
    t0: float,
    exact: bool,
) -> list[int]:
    if progress is not None:
        progress(time.monotonic() - t0, evaluate(pb, start).total)
    # Keep most of the budget for CP-SAT on the whole camp when small (a good hint is what
    # lets it prune early), and for re-solving a few crews at a time when large.
    share = (
        HINT_SHARE
        if exact
        else LS_SHARE
        if 2 * pb.max_size <= MAX_PAIR_PEOPLE
        else LS_SHARE_NO_PAIRS
    )
    stall = max(20_000, 100 * pb.n)
    if exact:
        iters = int(options.time_budget * ITERS_PER_SECOND)
        stop = min(deadline, t0 + share * options.time_budget)
    else:
        # Deterministic runs stop on work alone (the clock only guards the budget), so the
        # same seed gives the same answer however busy the machine is.
        iters = int(share * options.time_budget * ITERS_PER_SECOND)
        stop = deadline if options.deterministic else t0 + share * options.time_budget
    return local_search(State(pb, start), rng, stop, iters, stall, progress, t0)


def _solve_exact(
    pb: Problem,
    start: list[int],
    options: SolveOptions,
    deadline: float,
    progress: Progress | None,
    t0: float,
) -> tuple[list[int], Status, int | None]:
    """One CP-SAT model of the whole camp, hinted with `start` (kept when it is better)."""
    built = cpsat.build(pb, range(pb.n), range(pb.k), hint=start)
    res = cpsat.solve(
        built,
        pb,
        deadline - time.monotonic(),
        options.seed,
        options.workers,
        options.deterministic,
        progress,
        t0,
        prove=True,
    )
    candidates = [c for c in (res.crew_of, start) if c is not None]
    best = min(candidates, key=lambda c: evaluate(pb, c).total)
    status = Status.OPTIMAL if res.status == "optimal" and best is res.crew_of else Status.FEASIBLE
    return best, status, res.bound


def _infeasible(pb: Problem, deadline: float, t0: float) -> SolveResult:
    """CP-SAT has proven that no valid assignment exists; name the conflicting rules when
    an infeasibility core comes back in time."""
    _, core = explain_with_cpsat(pb, max(deadline - time.monotonic(), 1.0))
    reasons = (
        ["these constraints cannot all hold together: " + "; ".join(core)]
        if core
        else ["no valid assignment exists"]
    )
    return failed_result(Status.INFEASIBLE, reasons, time.monotonic() - t0)


def _finish(
    pb: Problem,
    crew_of: list[int],
    status: Status,
    bound: int | None,
    t0: float,
    verdicts: Mapping[tuple[int, int], wishes.Verdict],
) -> SolveResult:
    broken = violations(pb, crew_of)
    if broken:  # a bug, never an organiser's problem: refuse to hand out an invalid plan
        raise AssertionError("solver produced an invalid assignment: " + "; ".join(broken))
    return build_result(pb, crew_of, status, bound, time.monotonic() - t0, verdicts=verdicts)

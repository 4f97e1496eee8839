"""Minimal change to an approved assignment after late registrations or cancellations.

Two CP-SAT phases on as few crews as possible: first minimise how many people
change crew, then, with that number fixed, minimise the usual objective. On big
camps the crews considered start with those touched by the change plus likely
donors and receivers, and grow until a valid repair exists.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from flows.crews.solver import cpsat
from flows.crews.solver.explain import build_result, failed_result
from flows.crews.solver.feasibility import diagnose
from flows.crews.solver.model import Person, SolveOptions, SolveResult, SolverInput, Status
from flows.crews.solver.problem import Problem, common_languages, compile_problem, crew_members


def repair(
    inp: SolverInput,
    assignment: Mapping[str, int],
    added: Sequence[Person] = (),
    removed: Sequence[str] = (),
    options: SolveOptions = SolveOptions(),
) -> SolveResult:
    """Re-fit `assignment` (for the people of `inp`) after adding and removing people.

    Crew count stays the same. `result.moved` lists people already placed who
    changed crew, `result.changed_crews` every crew whose membership changed.
    """
    t0 = time.monotonic()
    pb = compile_problem(_changed_input(inp, assignment, added, removed))
    reasons = diagnose(pb)
    if reasons:
        return failed_result(Status.INFEASIBLE, reasons, time.monotonic() - t0)
    touched = sorted({c for pid, c in assignment.items() if pid in set(removed)})
    rng = random.Random(options.seed)
    crews = (
        _initial_crews(pb, touched, rng) if pb.n > options.exact_max_people else list(range(pb.k))
    )
    deadline = t0 + options.time_budget
    while True:
        found = _two_phase(pb, crews, deadline, options)
        if found is not None:
            prev = list(pb.previous)
            changed = sorted(
                set(touched)
                | {c for p, c in enumerate(found) if prev[p] != c}
                | {prev[p] for p, c in enumerate(found) if 0 <= prev[p] != c}
            )
            return build_result(
                pb, found, Status.FEASIBLE, None, time.monotonic() - t0, changed_crews=changed
            )
        if len(crews) == pb.k or time.monotonic() > deadline:
            status = Status.INFEASIBLE if len(crews) == pb.k else Status.UNKNOWN
            return failed_result(
                status,
                [
                    "no valid repair exists: the remaining people cannot "
                    "satisfy every hard constraint in the same crews"
                ]
                if status is Status.INFEASIBLE
                else ["no valid repair found within the time budget"],
                time.monotonic() - t0,
            )
        others = [c for c in range(pb.k) if c not in crews]
        rng.shuffle(others)
        crews = sorted(crews + others[: len(crews)])


def _changed_input(
    inp: SolverInput, assignment: Mapping[str, int], added: Sequence[Person], removed: Sequence[str]
) -> SolverInput:
    gone = set(removed)
    people = tuple(p for p in inp.people if p.id not in gone) + tuple(added)
    k = max(assignment.values(), default=-1) + 1
    return replace(
        inp,
        people=people,
        sizing=replace(inp.sizing, n_crews=k, target_size=None),
        together=tuple(
            g2 for g in inp.together if len(g2 := tuple(x for x in g if x not in gone)) > 1
        ),
        not_with=tuple(p for p in inp.not_with if not gone & set(p)),
        pins={pid: c for pid, c in inp.pins.items() if pid not in gone},
        past_pairs=tuple(pp for pp in inp.past_pairs if not gone & {pp.a, pp.b}),
        previous={pid: c for pid, c in assignment.items() if pid not in gone},
    )


def _initial_crews(pb: Problem, touched: list[int], rng: random.Random) -> list[int]:
    """Crews that lost people, the two emptiest crews each newcomer could join, and the
    two fullest crews sharing a language with each crew that lost someone."""
    members = crew_members(pb, [max(c, 0) for c in pb.previous])
    placed = [[p for p in m if pb.previous[p] >= 0] for m in members]
    common = [common_languages(pb, m) for m in placed]
    chosen = set(touched)
    for p in range(pb.n):
        if pb.previous[p] < 0:
            fits = [c for c in range(pb.k) if common[c] & pb.lang_mask[p]]
            chosen.update(sorted(fits, key=lambda c: (len(placed[c]), rng.random()))[:2])
    for t in touched:
        donors = [c for c in range(pb.k) if c != t and common[c] & common[t]]
        chosen.update(sorted(donors, key=lambda c: (-len(placed[c]), rng.random()))[:2])
    return sorted(chosen) or [0]


def _two_phase(
    pb: Problem, crews: list[int], deadline: float, options: SolveOptions
) -> list[int] | None:
    inside = set(crews)
    people = [p for p in range(pb.n) if pb.previous[p] < 0 or pb.previous[p] in inside]
    base = [max(c, 0) for c in pb.previous]
    stay = [(p, pb.previous[p]) for p in people if pb.previous[p] >= 0]

    def moved(built: cpsat.Built) -> list[object]:
        return [1 - built.x[p, c] if (p, c) in built.x else 1 for p, c in stay]

    first = cpsat.build(pb, people, crews, hint=base, objective=False)
    first.model.minimize(sum(moved(first)))  # type: ignore[arg-type]
    half = max((deadline - time.monotonic()) / 2, 0.1)
    res = cpsat.solve(
        first, pb, half, options.seed, options.workers, options.deterministic, base=base
    )
    if res.crew_of is None:
        return None
    fewest = sum(1 for p, c in stay if res.crew_of[p] != c)
    second = cpsat.build(pb, people, crews, hint=res.crew_of)
    second.model.add(sum(moved(second)) <= fewest)  # type: ignore[arg-type]
    res2 = cpsat.solve(
        second,
        pb,
        max(deadline - time.monotonic(), 0.1),
        options.seed,
        options.workers,
        options.deterministic,
        base=base,
    )
    return res2.crew_of if res2.crew_of is not None else res.crew_of

"""Together requests, one at a time: can this pair share a crew, and at what price?

Moving one person is often not enough to reunite a pair: when the crew they would join
speaks a language the newcomer does not, the members who only speak that language must
leave first, for crews that speak it, and the crew's language follows the people who stay
(a pinned member allows any language they speak). `unite` re-solves, exactly and with the
pair forced together, the pair's two crews plus the crews that could take in whoever has
to leave. `wish_pass` adopts every such change that lowers the objective, and the verdict
it leaves for each request still unmet is what the explanation is built from, so no reason
is printed that the final assignment does not bear out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from flows.crews.solver import cpsat
from flows.crews.solver.problem import Problem, common_languages, crew_members, evaluate

NEIGHBOURHOOD_CREWS = 4  # at most 32 people with crews of 8: CP-SAT answers in well under 1 s
UNITE_SECONDS = 0.5


class Outcome(StrEnum):
    BETTER = "better"  # a valid change unites them and lowers the objective
    COSTLIER = "costlier"  # valid changes unite them, none lowers the objective
    IMPOSSIBLE = "impossible"  # no valid assignment of these crews unites them (proven)
    UNKNOWN = "unknown"  # the time limit ran out first


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    crews: tuple[int, ...]  # the crews re-solved
    alternative: list[int] | None  # the best assignment found with the pair together


def neighbourhood(pb: Problem, crew_of: Sequence[int], i: int, j: int) -> list[int]:
    """The pair's crews, then crews whose shared language could take in the members that
    would have to leave them (those who share no language with the pair), then crews that
    have room or people to spare: all crews when there are few."""
    if pb.k <= NEIGHBOURHOOD_CREWS:
        return list(range(pb.k))
    ci, cj = crew_of[i], crew_of[j]
    members = crew_members(pb, crew_of)
    pair_mask = pb.lang_mask[i] & pb.lang_mask[j]
    leavers = 0
    for p in members[ci] + members[cj]:
        if not pb.lang_mask[p] & pair_mask:
            leavers |= pb.lang_mask[p]
    common = [common_languages(pb, m) for m in members]

    def rank(c: int) -> tuple[bool, int, int]:
        slack = max(pb.max_size - len(members[c]), len(members[c]) - pb.min_size)
        return (not common[c] & leavers, -slack, c)

    others = sorted((c for c in range(pb.k) if c not in (ci, cj)), key=rank)
    return sorted({ci, cj, *others[: NEIGHBOURHOOD_CREWS - 2]})


def unite(
    pb: Problem,
    crew_of: Sequence[int],
    i: int,
    j: int,
    time_limit: float,
    seed: int,
    deterministic: bool,
) -> Verdict:
    """Best valid assignment of the neighbourhood's crews that puts i and j together."""
    crews = neighbourhood(pb, crew_of, i, j)
    people = [p for p in range(pb.n) if crew_of[p] in crews]
    built = cpsat.build(pb, people, crews, hint=crew_of)
    for c in crews:
        xi, xj = built.x.get((i, c)), built.x.get((j, c))
        if xi is None and xj is None:
            continue
        if xi is None or xj is None:
            built.model.add((xi if xj is None else xj) == 0)
        else:
            built.model.add(xi == xj)
    res = cpsat.solve(built, pb, time_limit, seed, 1, deterministic, base=crew_of)
    if res.status == "infeasible":
        return Verdict(Outcome.IMPOSSIBLE, tuple(crews), None)
    if res.crew_of is None:
        return Verdict(Outcome.UNKNOWN, tuple(crews), None)
    better = evaluate(pb, res.crew_of).total < evaluate(pb, crew_of).total
    return Verdict(Outcome.BETTER if better else Outcome.COSTLIER, tuple(crews), res.crew_of)


def unmet(pb: Problem, crew_of: Sequence[int]) -> list[tuple[int, int]]:
    return [(i, j) for i, j, _ in pb.wishes if crew_of[i] != crew_of[j]]


def could_share(pb: Problem, i: int, j: int) -> bool:
    """False when no assignment at all can put them together, for reasons of their own."""
    both_pinned = pb.pinned[i] >= 0 and pb.pinned[j] >= 0 and pb.pinned[i] != pb.pinned[j]
    return not both_pinned and bool(pb.lang_mask[i] & pb.lang_mask[j]) and j not in pb.not_with[i]


def wish_pass(
    pb: Problem,
    crew_of: list[int],
    deadline: float,
    seed: int,
    deterministic: bool,
) -> tuple[list[int], dict[tuple[int, int], Verdict]]:
    """Reunite split pairs wherever that lowers the objective; returns the assignment and a
    verdict, valid for that assignment, for every request still unmet (as far as time
    allowed: a request without a verdict was not examined)."""
    best = list(crew_of)
    verdicts: dict[tuple[int, int], Verdict] = {}
    changed = True
    while changed:
        changed = False
        verdicts = {}
        for i, j in unmet(pb, best):
            if not could_share(pb, i, j):
                continue
            left = deadline - time.monotonic()
            if left <= 0.05:
                return best, verdicts
            verdict = unite(pb, best, i, j, min(UNITE_SECONDS, left), seed, deterministic)
            if verdict.outcome is Outcome.BETTER and verdict.alternative is not None:
                best, changed = verdict.alternative, True
                break
            verdicts[i, j] = verdict
    return best, verdicts

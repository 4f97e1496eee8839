"""Large-neighbourhood search for camps above the exact size: re-solve a few crews at a time.

First two crews at a time, exactly, by `PairSolver` (well under a millisecond each,
against tens of milliseconds for a CP-SAT call); once pairs stop paying, three crews at a
time with CP-SAT, whose larger neighbourhoods reach further. Pairs first beat CP-SAT
alone at every size measured (bench, final objectives per seed): 60 people 17/24/19 vs
19/24/20 and 90: 31/37/26 vs 36/44/34 with 5 s; 300: 52/89 vs 98/128 with 30 s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from flows.crews.solver import cpsat
from flows.crews.solver.local import Progress
from flows.crews.solver.model import Mode
from flows.crews.solver.pair import PairSolver
from flows.crews.solver.problem import Problem, crew_members, evaluate

LNS_CREWS = 3
PAIRS_PER_SECOND = 2000  # deterministic work budget: pairs tried per second of budget
CPSAT_CALLS_PER_SECOND = 5
PAIR_STALL_PER_CREW = 50  # pairs tried without a gain, per crew, before CP-SAT takes over


def search(
    pb: Problem,
    best: list[int],
    rng: random.Random,
    budget: float,
    deterministic: bool,
    deadline: float,
    progress: Progress | None,
    t0: float,
) -> list[int]:
    """Pairs until they stall, then CP-SAT on three crews for the rest of the time.

    With `deterministic`, both stop after a number of tries proportional to `budget`
    (calibrated to finish within it) rather than on the clock."""
    forever = 1 << 30
    rounds = int(budget * PAIRS_PER_SECOND) if deterministic else forever
    best = pair_search(pb, best, rng, rounds, PAIR_STALL_PER_CREW * pb.k, deadline, progress, t0)
    rounds = int(budget * CPSAT_CALLS_PER_SECOND) if deterministic else forever
    return cpsat_search(pb, best, rng, rounds, deterministic, deadline, progress, t0)


class Picker:
    """Chooses crews to re-solve together, where a joint re-solve can gain: crews split by a
    together-request or a travel group, or crews sharing a clustered value."""

    def __init__(self, pb: Problem, rng: random.Random) -> None:
        self.pb, self.rng = pb, rng
        self.cluster: list[tuple[tuple[int, ...], list[list[int]]]] = []
        for a in pb.attrs:
            if a.mode is Mode.CLUSTER:
                by_value: list[list[int]] = [[] for _ in a.values]
                for p, v in enumerate(a.value_of):
                    if v >= 0:
                        by_value[v].append(p)
                self.cluster.append((a.value_of, by_value))

    def pair(self, crew_of: Sequence[int], members: Sequence[Sequence[int]]) -> tuple[int, int]:
        pb, rng = self.pb, self.rng
        r = rng.random()
        if r < 0.1 and pb.together:
            i, j, _ = pb.together[rng.randrange(len(pb.together))]
            if crew_of[i] != crew_of[j]:
                return crew_of[i], crew_of[j]
        elif r < 0.2 and pb.travel_groups:
            g = pb.travel_groups[rng.randrange(len(pb.travel_groups))]
            i, j = g[rng.randrange(len(g))], g[rng.randrange(len(g))]
            if crew_of[i] != crew_of[j]:
                return crew_of[i], crew_of[j]
        elif self.cluster:
            found = self._mixed_pair(crew_of, members)
            if found is not None:
                return found
        p = rng.randrange(pb.n)
        b = rng.randrange(pb.k - 1)
        return crew_of[p], b + (b >= crew_of[p])

    def _mixed_pair(
        self, crew_of: Sequence[int], members: Sequence[Sequence[int]]
    ) -> tuple[int, int] | None:
        """Two crews that both mix values of a clustered attribute, preferably the same two
        or more values. Mixed crews are mostly forced by requests across values; re-solved
        together, two such crews can gather those people in one crew and leave the other
        pure, a change no single swap finds (on 2,000 people: 400 vs 550 after 30,000 pairs,
        against picking the second crew at random)."""
        rng = self.rng
        value_of, by_value = self.cluster[rng.randrange(len(self.cluster))]
        p = rng.randrange(self.pb.n)
        v, a = value_of[p], crew_of[p]
        mine = {value_of[x] for x in members[a]}
        if v < 0 or len(mine) < 2:
            return None
        same = by_value[v]
        fallback = None
        for _ in range(8):
            b = crew_of[same[rng.randrange(len(same))]]
            theirs = {value_of[x] for x in members[b]} if b != a else set()
            if len(theirs & mine) >= 2:
                return a, b
            if len(theirs) >= 2 and fallback is None:
                fallback = a, b
        return fallback


def pair_search(
    pb: Problem,
    best: list[int],
    rng: random.Random,
    rounds: int,
    stall: int,
    deadline: float,
    progress: Progress | None,
    t0: float,
) -> list[int]:
    """Re-solve pairs of crews exactly until `rounds` pairs are tried, `stall` in a row
    bring no gain, or time runs out.

    An equally good different split is taken too: drifting across plateaus keeps later
    pairs finding gains (on 2,000 people: 450 vs 555 after 30,000 pairs)."""
    solver, picker = PairSolver(pb), Picker(pb, rng)
    best = list(best)
    cost = evaluate(pb, best).total
    members = crew_members(pb, best)
    # A pair re-solved since neither crew changed cannot change again: skip it.
    version = [0] * pb.k
    checked: dict[tuple[int, int], tuple[int, int]] = {}
    last_gain = 0
    for r in range(rounds):
        if r - last_gain > stall or cost == 0 or (r % 32 == 0 and time.monotonic() > deadline):
            break
        a, b = picker.pair(best, members)
        key = (a, b) if a < b else (b, a)
        stamp = (version[key[0]], version[key[1]])
        if checked.get(key) == stamp:
            continue
        checked[key] = stamp
        split = solver.best_split(best, members[a], members[b], a, b, sideways=rng)
        if split is None:
            continue
        for p, c in zip(split.people, split.crew_of, strict=True):
            best[p] = c
        members[a] = [p for p, c in zip(split.people, split.crew_of, strict=True) if c == a]
        members[b] = [p for p, c in zip(split.people, split.crew_of, strict=True) if c == b]
        version[a] += 1
        version[b] += 1
        if split.delta < 0:
            cost += split.delta
            last_gain = r
            if progress is not None:
                progress(time.monotonic() - t0, cost)
    return best


def cpsat_search(
    pb: Problem,
    best: list[int],
    rng: random.Random,
    rounds: int,
    deterministic: bool,
    deadline: float,
    progress: Progress | None,
    t0: float,
) -> list[int]:
    """Re-solve three crews at a time with CP-SAT, picked around a split together-request
    or at random."""
    cost = evaluate(pb, best).total
    for _ in range(rounds):
        if time.monotonic() > deadline - 0.05 or cost == 0:
            break
        crews = _neighbourhood(pb, best, rng)
        people = [p for p in range(pb.n) if best[p] in crews]
        limit = min(0.5, deadline - time.monotonic())
        res = cpsat.solve(
            cpsat.build(pb, people, crews, hint=best),
            pb,
            limit,
            rng.randrange(1 << 30),
            1,
            deterministic,
            base=best,
        )
        if res.crew_of is not None:
            new = evaluate(pb, res.crew_of).total
            if new < cost:
                best, cost = res.crew_of, new
                if progress is not None:
                    progress(time.monotonic() - t0, cost)
    return best


def _neighbourhood(pb: Problem, crew_of: Sequence[int], rng: random.Random) -> list[int]:
    if pb.k <= LNS_CREWS:
        return list(range(pb.k))
    split = [(i, j) for i, j, _ in pb.together if crew_of[i] != crew_of[j]]
    if split and rng.random() < 0.5:
        i, j = split[rng.randrange(len(split))]
        chosen = {crew_of[i], crew_of[j]}
    else:
        chosen = {rng.randrange(pb.k)}
    while len(chosen) < LNS_CREWS:
        chosen.add(rng.randrange(pb.k))
    return sorted(chosen)

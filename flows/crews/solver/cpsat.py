"""CP-SAT model of the crew problem, for whole camps or for a few crews at a time (LNS).

The model encodes exactly `crews_problem.evaluate`: on the whole camp its
objective (with the constant offset) equals `evaluate(...).total`; on a subset
of crews it differs from it only by a constant, so sub-solves can be compared
with `evaluate` directly.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from flows.crews.solver.local import Progress
from flows.crews.solver.model import Mode
from flows.crews.solver.problem import Problem, even_split_pairs

Var = cp_model.IntVar


@dataclass
class Built:
    model: cp_model.CpModel
    x: dict[tuple[int, int], Var]
    people: list[int]
    crews: list[int]


def build(
    pb: Problem,
    people: Sequence[int],
    crews: Sequence[int],
    hint: Sequence[int] | None = None,
    objective: bool = True,
) -> Built:
    """Model people placed into crews; all of `people` must end up in `crews`."""
    m = cp_model.CpModel()
    people, crews = list(people), list(crews)
    whole = len(people) == pb.n and len(crews) == pb.k
    x: dict[tuple[int, int], Var] = {}
    for p in people:
        allowed = [pb.pinned[p]] if pb.pinned[p] >= 0 else crews
        for c in allowed:
            if c in crews:
                x[p, c] = m.new_bool_var(f"x{p}_{c}")
        m.add_exactly_one(x[p, c] for c in crews if (p, c) in x)
    _hard(pb, m, x, people, crews, whole)
    if hint is not None:
        hint = canonical(pb, hint) if whole else hint
        for (p, c), v in x.items():
            m.add_hint(v, hint[p] == c)
    if objective:
        m.minimize(_objective(pb, m, x, people, crews, whole))
    return Built(m, x, people, crews)


def _hard(
    pb: Problem,
    m: cp_model.CpModel,
    x: dict[tuple[int, int], Var],
    people: list[int],
    crews: list[int],
    whole: bool,
) -> None:
    spoken = sorted(
        {b for p in people for b in range(len(pb.languages)) if pb.lang_mask[p] >> b & 1}
    )
    for c in crews:
        here = [x[p, c] for p in people if (p, c) in x]
        m.add(sum(here) >= pb.min_size)
        m.add(sum(here) <= pb.max_size)
        lang = {b: m.new_bool_var(f"l{c}_{b}") for b in spoken}
        m.add_exactly_one(lang.values())
        for p in people:
            if (p, c) in x:
                m.add_bool_or(
                    [x[p, c].negated()] + [lang[b] for b in spoken if pb.lang_mask[p] >> b & 1]
                )
        if pb.require_facilitator:
            m.add_bool_or([x[p, c] for p in people if (p, c) in x and pb.facilitator[p]])
    chosen = set(people)
    for p in people:
        for q in pb.not_with[p]:
            if q > p and q in chosen:
                for c in crews:
                    if (p, c) in x and (q, c) in x:
                        m.add_bool_or([x[p, c].negated(), x[q, c].negated()])
    if whole:
        _break_symmetry(pb, m, x)


def _break_symmetry(pb: Problem, m: cp_model.CpModel, x: dict[tuple[int, int], Var]) -> None:
    """Crews nobody is pinned to or was previously in are interchangeable: order them by
    their first member (any solution can be relabelled so, empty crews last). Person p may
    join the t-th such crew only if someone before p is in the (t-1)-th."""
    plain = _plain_crews(pb)
    free = [p for p in range(pb.n) if pb.pinned[p] < 0]
    for t in range(1, len(plain)):
        before: list[Var] = []
        for p in free:
            if (p, plain[t]) in x:
                if before:
                    m.add(x[p, plain[t]] <= sum(before))
                else:
                    m.add(x[p, plain[t]] == 0)
            if (p, plain[t - 1]) in x:
                before.append(x[p, plain[t - 1]])


def canonical(pb: Problem, crew_of: Sequence[int]) -> list[int]:
    """Relabel interchangeable crews in order of first appearance, matching `_break_symmetry`."""
    plain = _plain_crews(pb)
    order: list[int] = []
    for p in range(pb.n):
        if crew_of[p] in plain and crew_of[p] not in order:
            order.append(crew_of[p])
    relabel = dict(zip(order, [c for c in range(pb.k) if c in plain], strict=False))
    return [relabel.get(c, c) for c in crew_of]


def _plain_crews(pb: Problem) -> list[int]:
    marked = {c for c in pb.pinned if c >= 0} | {c for c in pb.previous if c >= 0}
    return [c for c in range(pb.k) if c not in marked]


def _objective(
    pb: Problem,
    m: cp_model.CpModel,
    x: dict[tuple[int, int], Var],
    people: list[int],
    crews: list[int],
    whole: bool,
) -> cp_model.LinearExpr:
    chosen = set(people)
    terms: list[cp_model.LinearExprT] = []
    offset = 0
    for i, j, w in pb.together:
        if i in chosen and j in chosen:
            same = []
            for c in crews:
                if (i, c) in x and (j, c) in x:
                    z = m.new_bool_var("")
                    m.add_implication(z, x[i, c])
                    m.add_implication(z, x[j, c])
                    same.append(z)
            if len(same) >= 2:
                m.add_at_most_one(same)  # a linear row: keeps the LP bound of this term >= 0
            offset += w
            terms.append(-w * sum(same))
    for i, j, w in pb.repeat:
        if i in chosen and j in chosen:
            r = m.new_bool_var("")
            for c in crews:
                if (i, c) in x and (j, c) in x:
                    m.add_bool_or([x[i, c].negated(), x[j, c].negated(), r])
            terms.append(w * r)
    for a in pb.attrs:
        terms.extend(_attr_terms(pb, m, x, people, crews, a.mode, a.weight, a.value_of))
        if whole and a.mode is Mode.SPREAD:
            offset -= a.weight * a.baseline
    for g in pb.travel_groups:
        inside = [p for p in g if p in chosen]
        if len(inside) > 0:
            spans = []
            for c in crews:
                here = [x[p, c] for p in inside if (p, c) in x]
                if here:
                    t = m.new_bool_var("")
                    m.add_max_equality(t, here)
                    terms.append(pb.travel_weight * t)
                    spans.append(t)
            # Everyone inside lands in these crews: at least ceil(size / max) of them are used.
            m.add(sum(spans) >= -(-len(inside) // max(pb.max_size, 1)))
    if whole:
        offset -= pb.travel_weight * pb.travel_baseline
    for p in people:
        pv = pb.previous[p]
        if pv >= 0 and pv in crews:
            offset += pb.move_weight
            if (p, pv) in x:
                terms.append(-pb.move_weight * x[p, pv])
    return cp_model.LinearExpr.sum(terms) + offset


def _attr_terms(
    pb: Problem,
    m: cp_model.CpModel,
    x: dict[tuple[int, int], Var],
    people: list[int],
    crews: list[int],
    mode: Mode,
    weight: int,
    value_of: tuple[int, ...],
) -> list[cp_model.LinearExprT]:
    by_value: dict[int, list[int]] = defaultdict(list)
    for p in people:
        if value_of[p] >= 0:
            by_value[value_of[p]].append(p)
    out: list[cp_model.LinearExprT] = []
    spread_pairs: dict[int, list[Var]] = defaultdict(list)
    used: dict[int, list[Var]] = defaultdict(list)
    for c in crews:
        present = []
        for v, members in by_value.items():
            here = [x[p, c] for p in members if (p, c) in x]
            if mode is Mode.SPREAD and len(here) >= 2:
                # pairs >= C(count, 2), linearised by its chords (exact at integers).
                top = min(len(here), pb.max_size)
                pairs = m.new_int_var(0, top * (top - 1) // 2, "")
                for s in range(1, top):
                    m.add(pairs >= s * sum(here) - s * (s + 1) // 2)
                out.append(weight * pairs)
                spread_pairs[value_of[members[0]]].append(pairs)
            elif mode is Mode.CLUSTER and here:
                u = m.new_bool_var("")
                m.add_max_equality(u, here)
                present.append(u)
                used[v].append(u)
        if len(present) >= 2:
            extra = m.new_int_var(0, len(present) - 1, "")
            m.add(extra >= sum(present) - 1)
            out.append(weight * extra)
    # Everyone modelled lands in these crews, so each value's pairs are at least those of
    # an even split: a cut the LP relaxation of the chords alone does not see.
    for v, pair_vars in spread_pairs.items():
        m.add(sum(pair_vars) >= even_split_pairs(len(by_value[v]), len(crews)))
    # Likewise a clustered value needs at least ceil(count / max size) crews.
    for v, flags in used.items():
        m.add(sum(flags) >= -(-len(by_value[v]) // max(pb.max_size, 1)))
    return out


@dataclass(frozen=True)
class CpResult:
    status: str  # "optimal", "feasible", "infeasible", "unknown"
    crew_of: list[int] | None
    objective: int | None
    bound: int | None


class _Callback(cp_model.CpSolverSolutionCallback):
    def __init__(self, progress: Progress, t0: float) -> None:
        super().__init__()
        self.progress, self.t0 = progress, t0

    def on_solution_callback(self) -> None:
        self.progress(time.monotonic() - self.t0, int(self.objective_value))


def solve(
    built: Built,
    pb: Problem,
    time_limit: float,
    seed: int,
    workers: int,
    deterministic: bool,
    progress: Progress | None = None,
    t0: float = 0.0,
    base: Sequence[int] | None = None,
    prove: bool = False,
) -> CpResult:
    """Solve; `base` supplies the crews of people outside the model (sub-problems).

    With `prove` (a whole camp, hinted with a good answer) the workers go to raising the
    lower bound rather than to finding solutions: measured on camps of 30, an LP-heavy
    search next to an objective-lower-bound search proves optimality about twice as
    often within 5 s as the default pair (LP search + feasibility jump)."""
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.max_time_in_seconds = max(time_limit, 0.01)
    prm.random_seed = seed
    prm.num_workers = workers
    if prove and workers == 2:
        prm.subsolvers.extend(["max_lp", "objective_lb_search"])
    if deterministic:
        # Interleaved search is reproducible; the deterministic limit keeps it so when the
        # wall clock would otherwise cut the search at a machine-dependent point.
        prm.interleave_search = True
        prm.max_deterministic_time = max(time_limit, 0.01)
    cb = _Callback(progress, t0) if progress is not None else None
    st = solver.solve(built.model, cb)
    names = {
        cp_model.OPTIMAL: "optimal",
        cp_model.FEASIBLE: "feasible",
        cp_model.INFEASIBLE: "infeasible",
    }
    status = names.get(st, "unknown")
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return CpResult(status, None, None, None)
    crew_of = list(base) if base is not None else [-1] * pb.n
    for (p, c), v in built.x.items():
        if solver.boolean_value(v):
            crew_of[p] = c
    has_obj = built.model.has_objective()
    return CpResult(
        status,
        crew_of,
        round(solver.objective_value) if has_obj else None,
        round(solver.best_objective_bound) if has_obj else None,
    )

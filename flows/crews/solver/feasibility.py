"""Explain why no valid crew assignment exists, in sentences an organiser can act on.

`diagnose` runs counting arguments that catch the usual causes in microseconds,
before any search. `explain_with_cpsat` is the fallback: a CP-SAT model whose
relaxable constraints sit behind assumption literals, so an infeasibility core
names the constraints that conflict.
"""

from __future__ import annotations

from collections import defaultdict

from ortools.sat.python import cp_model

from flows.crews.solver.problem import Problem, common_languages


def _who(pb: Problem, p: int) -> str:
    return pb.names[p] or pb.ids[p]


def _langs(pb: Problem, mask: int) -> str:
    return "/".join(lang for b, lang in enumerate(pb.languages) if mask >> b & 1) or "none"


def diagnose(pb: Problem) -> list[str]:
    """Return reasons the problem is certainly infeasible (empty: no quick proof found)."""
    out = _sizes(pb)
    out += _pins(pb)
    out += _languages(pb)
    if pb.require_facilitator:
        fac = sum(pb.facilitator)
        if fac < pb.k:
            out.append(
                f"only {fac} facilitator{'s' * (fac != 1)} for {pb.k} crews (every crew needs one)"
            )
    return out


def _sizes(pb: Problem) -> list[str]:
    n, k, lo, hi = pb.n, pb.k, pb.min_size, pb.max_size
    if n == 0:
        return ["there is nobody to assign"]
    if lo > hi:
        return [f"the minimum crew size {lo} is larger than the maximum {hi}"]
    if n < k * lo:
        return [f"{n} people cannot fill {k} crews of at least {lo}"]
    if n > k * hi:
        return [f"{n} people do not fit in {k} crews of at most {hi}"]
    return []


def _pins(pb: Problem) -> list[str]:
    out: list[str] = []
    by_crew: dict[int, list[int]] = defaultdict(list)
    for p, c in enumerate(pb.pinned):
        if c >= pb.k:
            out.append(f"{_who(pb, p)} is pinned to crew {c + 1} but there are only {pb.k} crews")
        elif c >= 0:
            by_crew[c].append(p)
    for c, members in sorted(by_crew.items()):
        if len(members) > pb.max_size:
            out.append(
                f"{len(members)} people are pinned to crew {c + 1}, more than the "
                f"maximum crew size of {pb.max_size}"
            )
        for p in members:
            for q in pb.not_with[p]:
                if q > p and pb.pinned[q] == c:
                    out.append(
                        f"{_who(pb, p)} and {_who(pb, q)} are both pinned to crew {c + 1} "
                        f"but marked not-with"
                    )
        if common_languages(pb, members) == 0:
            names = ", ".join(f"{_who(pb, p)} ({_langs(pb, pb.lang_mask[p])})" for p in members)
            out.append(f"people pinned to crew {c + 1} share no language: {names}")
    return out


def _languages(pb: Problem) -> list[str]:
    out = [f"{_who(pb, p)} speaks no language" for p in range(pb.n) if pb.lang_mask[p] == 0]
    needed: dict[str, int] = {}
    for b, lang in enumerate(pb.languages):
        only = sum(1 for m in pb.lang_mask if m == 1 << b)
        if not only:
            continue
        speakers = sum(1 for m in pb.lang_mask if m >> b & 1)
        facs = sum(1 for p, m in enumerate(pb.lang_mask) if m >> b & 1 and pb.facilitator[p])
        crews = -(-only // max(pb.max_size, 1))
        needed[lang] = crews
        who = f"{only} {lang}-only speaker{'s' * (only != 1)}"
        if speakers < pb.min_size:
            out.append(
                f"{who} but only {speakers} people speak {lang}, fewer than the "
                f"minimum crew size of {pb.min_size}"
            )
        elif speakers < crews * pb.min_size:
            out.append(f"{who} need {crews} {lang} crews but only {speakers} people speak {lang}")
        if pb.require_facilitator and facs == 0:
            out.append(f"{who} but no {lang}-speaking facilitator")
        elif pb.require_facilitator and facs < crews:
            out.append(f"{who} need {crews} {lang} crews but only {facs} facilitators speak {lang}")
    if sum(needed.values()) > pb.k:
        detail = ", ".join(f"{c} for {lang}" for lang, c in needed.items())
        out.append(
            f"single-language speakers need {sum(needed.values())} crews ({detail}) "
            f"but there are only {pb.k}"
        )
    return out


def explain_with_cpsat(pb: Problem, time_limit: float) -> tuple[str, list[str]]:
    """Return ("infeasible", conflicting constraints), ("feasible", []) or ("unknown", [])."""
    m = cp_model.CpModel()
    k = pb.k
    x = {(p, c): m.new_bool_var("") for p in range(pb.n) for c in range(k)}
    labels: list[tuple[cp_model.IntVar, str]] = []

    def switch(label: str) -> cp_model.IntVar:
        lit = m.new_bool_var(label)
        labels.append((lit, label))
        return lit

    for p in range(pb.n):
        m.add_exactly_one(x[p, c] for c in range(k))
    lo = switch(f"the minimum crew size of {pb.min_size}")
    hi = switch(f"the maximum crew size of {pb.max_size}")
    fac = switch("at least one facilitator per crew") if pb.require_facilitator else None
    nl = len(pb.languages)
    for c in range(k):
        size = sum(x[p, c] for p in range(pb.n))
        m.add(size >= pb.min_size).only_enforce_if(lo)
        m.add(size <= pb.max_size).only_enforce_if(hi)
        if fac is not None:
            m.add_bool_or([x[p, c] for p in range(pb.n) if pb.facilitator[p]]).only_enforce_if(fac)
        lang = [m.new_bool_var("") for _ in range(nl)]
        m.add_exactly_one(lang)
        for p in range(pb.n):
            m.add_bool_or(
                [x[p, c].negated()] + [lang[b] for b in range(nl) if pb.lang_mask[p] >> b & 1]
            )
    for p in range(pb.n):
        for q in pb.not_with[p]:
            if q > p:
                lit = switch(f"{_who(pb, p)} and {_who(pb, q)} marked not-with")
                for c in range(k):
                    m.add_bool_or([x[p, c].negated(), x[q, c].negated()]).only_enforce_if(lit)
        if 0 <= pb.pinned[p] < k:
            m.add(x[p, pb.pinned[p]] == 1).only_enforce_if(
                switch(f"{_who(pb, p)} pinned to crew {pb.pinned[p] + 1}")
            )
    m.add_assumptions([lit for lit, _ in labels])
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit, 0.1)
    solver.parameters.num_workers = 1  # infeasibility cores are only produced single-threaded
    st = solver.solve(m)
    if st == cp_model.INFEASIBLE:
        core = set(solver.sufficient_assumptions_for_infeasibility())
        named = [label for lit, label in labels if lit.index in core]
        return "infeasible", named or ["every crew needs a language all its members speak"]
    return ("feasible" if st in (cp_model.OPTIMAL, cp_model.FEASIBLE) else "unknown"), []

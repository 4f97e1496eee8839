"""Human-readable explanations: unmet requests, result assembly and the per-crew table."""

from __future__ import annotations

from collections.abc import Sequence

from flows.crews.solver.local import State
from flows.crews.solver.model import (
    Breakdown,
    Crew,
    SolveResult,
    Status,
    UnmetRequest,
)
from flows.crews.solver.problem import (
    Problem,
    common_languages,
    crew_costs,
    crew_members,
    evaluate,
)

TERMS = ("together", "balance", "repeat", "travel", "moves")


def _who(pb: Problem, p: int) -> str:
    return pb.names[p] or pb.ids[p]


def why_not_move(st: State, p: int, b: int) -> str:
    """Name the hard constraint that stops p from joining crew b (assumes `not can_move`)."""
    pb, a = st.pb, st.crew_of[p]
    if pb.pinned[p] >= 0:
        return f"{_who(pb, p)} is pinned to crew {pb.pinned[p] + 1}"
    if not st.common[b] & pb.lang_mask[p]:
        return "different languages"
    blocker = next((r for r in pb.not_with[p] if st.crew_of[r] == b), -1)
    if blocker >= 0:
        return f"{_who(pb, p)} is marked not-with {_who(pb, blocker)}"
    if pb.require_facilitator and pb.facilitator[p] and st.fac_cnt[a] == 1:
        return f"{_who(pb, p)} is the only facilitator of crew {a + 1}"
    return "crew size limit"


def explain_unmet(pb: Problem, st: State, i: int, j: int) -> str:
    """Why requested crewmates i and j ended up apart, checked against every single
    relocate or swap that would reunite them."""
    if pb.pinned[i] >= 0 and pb.pinned[j] >= 0:
        return "pinned to different crews"
    if not pb.lang_mask[i] & pb.lang_mask[j]:
        return "different languages"
    if j in pb.not_with[i]:
        return "they are also marked not-with each other"
    ci, cj = st.crew_of[i], st.crew_of[j]
    blockers: list[str] = []
    options: list[list[int]] = []
    for p, other, target in ((i, j, cj), (j, i, ci)):
        if st.can_move(p, target):
            options.append(_moved(st, [(p, target)]))
        else:
            blockers.append(why_not_move(st, p, target))
        for q in st.members[target]:
            if q != other and st.can_swap(p, q):
                options.append(_moved(st, [(p, target), (q, st.crew_of[p])]))
    if not options:
        return "; ".join(dict.fromkeys(blockers))
    now = evaluate(pb, st.crew_of)
    best = min(options, key=lambda c: evaluate(pb, c).total)
    alt = evaluate(pb, best)
    if alt.total < now.total:
        return "could be met by a move the search did not reach in its time budget"
    worse = [t for t in TERMS if getattr(alt, t) > getattr(now, t) and t != "together"]
    return "traded off against " + (" and ".join(worse) if worse else "other requests")


def _moved(st: State, moves: Sequence[tuple[int, int]]) -> list[int]:
    out = list(st.crew_of)
    for p, c in moves:
        out[p] = c
    return out


def crew_language(pb: Problem, members: Sequence[int]) -> str:
    mask = common_languages(pb, members)
    speakers = [sum(m >> b & 1 for m in pb.lang_mask) for b in range(len(pb.languages))]
    options = [b for b in range(len(pb.languages)) if mask >> b & 1]
    return pb.languages[max(options, key=lambda b: (speakers[b], -b))] if options else ""


def build_result(
    pb: Problem,
    crew_of: Sequence[int],
    status: Status,
    bound: int | None,
    elapsed: float,
    previous: Sequence[int] | None = None,
    changed_crews: Sequence[int] = (),
) -> SolveResult:
    st = State(pb, crew_of)
    costs = crew_costs(pb, crew_of)
    crews = tuple(
        Crew(c, crew_language(pb, m), tuple(pb.ids[p] for p in m), costs[c])
        for c, m in enumerate(crew_members(pb, crew_of))
    )
    unmet = tuple(
        UnmetRequest(pb.ids[i], pb.ids[j], explain_unmet(pb, st, i, j))
        for i, j, _ in pb.together
        if crew_of[i] != crew_of[j]
    )
    prev = previous if previous is not None else pb.previous
    moved = tuple(pb.ids[p] for p in range(pb.n) if prev[p] >= 0 and prev[p] != crew_of[p])
    return SolveResult(
        status=status,
        assignment={pb.ids[p]: c for p, c in enumerate(crew_of)},
        crews=crews,
        breakdown=evaluate(pb, crew_of),
        bound=bound,
        worst_crew=max(range(pb.k), key=lambda c: (costs[c], -c)) if pb.k else None,
        unmet=unmet,
        reasons=(),
        elapsed=elapsed,
        changed_crews=tuple(changed_crews),
        moved=moved,
    )


def failed_result(status: Status, reasons: Sequence[str], elapsed: float) -> SolveResult:
    return SolveResult(
        status=status,
        assignment={},
        crews=(),
        breakdown=None,
        bound=None,
        worst_crew=None,
        unmet=(),
        reasons=tuple(reasons),
        elapsed=elapsed,
    )


def render_table(result: SolveResult, names: dict[str, str] | None = None) -> str:
    """Plain-text report: one block per crew, then the objective split and unmet requests."""
    names = names or {}
    if not result.valid:
        return "No valid crew assignment.\n" + "".join(f"  - {r}\n" for r in result.reasons)
    lines: list[str] = []
    unmet_by_person: dict[str, list[UnmetRequest]] = {}
    for u in result.unmet:
        unmet_by_person.setdefault(u.a, []).append(u)
    for crew in result.crews:
        flag = "  <- highest cost" if crew.index == result.worst_crew else ""
        lines.append(
            f"Crew {crew.index + 1} ({len(crew.members)} people, language: "
            f"{crew.language}, cost {crew.cost}){flag}"
        )
        for pid in crew.members:
            lines.append(f"  - {names.get(pid, pid)}")
        for pid in crew.members:
            for u in unmet_by_person.get(pid, []):
                lines.append(
                    f"  ! {names.get(u.a, u.a)} wanted to be with {names.get(u.b, u.b)}: {u.reason}"
                )
    b: Breakdown | None = result.breakdown
    if b is not None:
        split = ", ".join(f"{t} {getattr(b, t)}" for t in TERMS)
        bound = f", proven lower bound {result.bound}" if result.bound is not None else ""
        lines.append(f"Objective {b.total} ({split}); status {result.status.value}{bound}")
    met = (
        "all together requests met"
        if not result.unmet
        else (f"{len(result.unmet)} together request(s) unmet")
    )
    lines.append(met)
    return "\n".join(lines) + "\n"

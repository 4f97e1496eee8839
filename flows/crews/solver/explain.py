"""Human-readable explanations: unmet requests, result assembly and the per-crew table."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from flows.crews.solver.local import State
from flows.crews.solver.model import (
    Crew,
    Person,
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
from flows.crews.solver.wishes import Outcome, Verdict, unite

TERMS = ("together", "balance", "repeat", "travel", "moves", "size")
TERM_WORDS = {
    "balance": "balance",
    "repeat": "mixing with new people",
    "travel": "travel groups",
    "moves": "keeping people in their crews",
    "size": "even crew sizes",
}
EXPLAIN_SECONDS = 0.3  # per unmet request examined only when the report is built
EXPLAIN_TOTAL_SECONDS = 3.0  # beyond this, requests left unexamined say so


def _who(pb: Problem, p: int) -> str:
    return pb.names[p] or pb.ids[p]


def _langs(pb: Problem, mask: int) -> str:
    return "/".join(lang for b, lang in enumerate(pb.languages) if mask >> b & 1)


def why_not_move(st: State, p: int, b: int) -> str:
    """The hard rule that stops p from joining crew b alone, as a fact of the assignment
    (assumes `not can_move`)."""
    pb, a = st.pb, st.crew_of[p]
    if pb.pinned[p] >= 0:
        return f"{_who(pb, p)} is pinned to crew {pb.pinned[p] + 1}"
    if not st.common[b] & pb.lang_mask[p]:
        return f"{_who(pb, p)} does not speak crew {b + 1}'s language ({_langs(pb, st.common[b])})"
    blocker = next((r for r in pb.not_with[p] if st.crew_of[r] == b), -1)
    if blocker >= 0:
        return f"{_who(pb, p)} is marked not-with {_who(pb, blocker)}"
    if pb.require_facilitator and pb.facilitator[p] and st.fac_cnt[a] == 1:
        return f"{_who(pb, p)} is the only facilitator of crew {a + 1}"
    if st.size[b] >= pb.max_size:
        return f"crew {b + 1} is full ({st.size[b]} people)"
    return f"crew {a + 1} would be too small without {_who(pb, p)}"


def explain_unmet(
    pb: Problem,
    st: State,
    i: int,
    j: int,
    verdict: Verdict | None,
    until: float = float("inf"),
) -> str:
    """Why i's request for j is unmet. Reasons about the pair alone are facts of the input;
    anything else comes from re-solving the crews around them with the pair forced together
    (`wishes.unite`), so a reason is printed only when that search bears it out."""
    ci, cj = st.crew_of[i], st.crew_of[j]
    if pb.pinned[i] >= 0 and pb.pinned[j] >= 0 and ci != cj:
        return f"they are pinned to different crews ({ci + 1} and {cj + 1})"
    if not pb.lang_mask[i] & pb.lang_mask[j]:
        return (
            f"they share no language ({_who(pb, i)}: {_langs(pb, pb.lang_mask[i])}; "
            f"{_who(pb, j)}: {_langs(pb, pb.lang_mask[j])})"
        )
    if j in pb.not_with[i]:
        return "they are also marked not-with each other"
    if verdict is None:
        if time.monotonic() > until:
            return "not examined further within the time budget"
        verdict = unite(pb, st.crew_of, i, j, EXPLAIN_SECONDS, 0, True)
    if verdict.outcome is Outcome.BETTER:
        return "could be met by a change the search did not reach in its time budget"
    if verdict.outcome is Outcome.IMPOSSIBLE:
        return _impossible(pb, st, i, j, verdict)
    if verdict.alternative is None:
        return "no valid change that puts them together was found in the time budget"
    now, alt = evaluate(pb, st.crew_of), evaluate(pb, verdict.alternative)
    worse = [TERM_WORDS[t] for t in TERMS if t != "together" and getattr(alt, t) > getattr(now, t)]
    return "traded off against " + (" and ".join(worse) if worse else "other requests")


def _impossible(pb: Problem, st: State, i: int, j: int, verdict: Verdict) -> str:
    """No valid assignment of the crews examined unites them: say so, with the rules that
    stop each of them from simply joining the other (facts, each checked here)."""
    ci, cj = st.crew_of[i], st.crew_of[j]
    facts = [why_not_move(st, p, c) for p, c in ((i, cj), (j, ci)) if not st.can_move(p, c)]
    scope = (
        "no valid assignment puts them together"
        if len(verdict.crews) == pb.k
        else "no valid change of crews "
        + ", ".join(str(c + 1) for c in verdict.crews)
        + " puts them together"
    )
    return scope + (": " + "; ".join(dict.fromkeys(facts)) if facts else "")


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
    verdicts: Mapping[tuple[int, int], Verdict] | None = None,
) -> SolveResult:
    st = State(pb, crew_of)
    costs = crew_costs(pb, crew_of)
    crews = tuple(
        Crew(c, crew_language(pb, m), tuple(pb.ids[p] for p in m), costs[c])
        for c, m in enumerate(crew_members(pb, crew_of))
    )
    verdicts = verdicts or {}
    until = time.monotonic() + EXPLAIN_TOTAL_SECONDS
    unmet = tuple(
        UnmetRequest(
            pb.ids[i], pb.ids[j], explain_unmet(pb, st, i, j, verdicts.get((i, j)), until), mutual
        )
        for i, j, mutual in pb.wishes
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
        requests=len(pb.wishes),
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


def render_table(
    result: SolveResult, names: Mapping[str, str] | None = None, people: Sequence[Person] = ()
) -> str:
    """Plain-text report: a summary (crews, sizes, requests met, search), then one block
    per crew with each member's marks, languages and attributes, and the unmet requests."""
    names = names or {}
    if not result.valid:
        return "No valid crew assignment.\n" + "".join(f"  - {r}\n" for r in result.reasons)
    by_id = {p.id: p for p in people}
    sizes = ", ".join(str(len(c.members)) for c in result.crews)
    met = result.requests - len(result.unmet)
    search = (
        "proven best possible"
        if result.status is Status.OPTIMAL
        else "best found within the time budget"
    )
    lines = [
        f"{len(result.assignment)} people in {len(result.crews)} crews; sizes {sizes}",
        f"together requests: {met} of {result.requests} met; search: {search}",
    ]
    unmet_by_person: dict[str, list[UnmetRequest]] = {}
    for u in result.unmet:
        unmet_by_person.setdefault(u.a, []).append(u)
    for crew in result.crews:
        lines.append(
            f"Crew {crew.index + 1} ({len(crew.members)} people, language {crew.language})"
        )
        for pid in crew.members:
            lines.append(f"  - {names.get(pid, pid)}{_person_details(by_id.get(pid))}")
        for pid in crew.members:
            for u in unmet_by_person.get(pid, []):
                asked = "and {} asked for each other" if u.mutual else "asked to be with {}"
                lines.append(
                    f"  ! {names.get(u.a, u.a)} {asked.format(names.get(u.b, u.b))}: {u.reason}"
                )
    return "\n".join(lines) + "\n"


def _person_details(p: Person | None) -> str:
    if p is None:
        return ""
    mark = " [facilitator]" if p.facilitator else ""
    parts = ["speaks " + "/".join(sorted(p.languages))]
    parts += [f"{k} {v}" for k, v in p.attributes.items() if v]
    return mark + " · " + " · ".join(parts)

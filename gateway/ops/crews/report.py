"""Plain-text views of crew proposals and the call roster, for the terminal and the chat room.

Everything is rendered from the stored flow state (plus current names and answers), so
showing a proposal again never re-runs the solver.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from flows.config import GatheringConfig
from flows.crews.solver.solve import SolveResult
from gateway.ops.crews.inputs import Registrant, attribute_value, truthy
from gateway.ops.reports import format_table

TERMS = ("together", "balance", "repeat", "travel", "moves")


def proposal_payload(result: SolveResult, kind: str, **extra: Any) -> dict[str, Any]:
    """What the flow stores for a valid solver result (plain JSON)."""
    assert result.breakdown is not None
    return {
        "kind": kind,
        "assignment": dict(result.assignment),
        "languages": [c.language for c in result.crews],
        "status": result.status.value,
        "objective": result.breakdown.total,
        "breakdown": {t: getattr(result.breakdown, t) for t in TERMS},
        "bound": result.bound,
        "unmet": [{"a": u.a, "b": u.b, "reason": u.reason} for u in result.unmet],
        "moved": list(result.moved),
        "changed_crews": list(result.changed_crews),
        **extra,
    }


def _members(assignment: Mapping[str, int]) -> list[list[str]]:
    crews: list[list[str]] = [[] for _ in range(1 + max(assignment.values(), default=-1))]
    for person, crew in sorted(assignment.items(), key=lambda item: int(item[0])):
        crews[crew].append(person)
    return crews


def describe_proposal(
    gathering: GatheringConfig,
    proposal: Mapping[str, Any],
    people: Sequence[Registrant],
    pins: Mapping[str, int],
    before: Mapping[str, int] | None = None,
    names: Mapping[str, str] | None = None,
) -> str:
    """One block per crew: members, how each balance criterion came out, unmet requests."""
    by_key = {r.key: r for r in people}
    crews_cfg = gathering.crews
    assignment: Mapping[str, int] = proposal["assignment"]
    members = _members(assignment)
    languages = proposal.get("languages", [])

    def name(key: str) -> str:
        return by_key[key].name if key in by_key else (names or {}).get(key, f"#{key}")

    lines = [
        f"{proposal['kind'].capitalize()} proposal, round {proposal.get('round', 1)}, for "
        f"{gathering.name}: {len(assignment)} people in {len(members)} crews"
    ]
    unmet: dict[str, list[Mapping[str, str]]] = {}
    for u in proposal.get("unmet", []):
        unmet.setdefault(u["a"], []).append(u)
    for c, crew in enumerate(members):
        language = languages[c] if c < len(languages) else ""
        lines.append(
            f"Crew {c + 1} ({len(crew)} people"
            + (f", language {language}" if language and language != "any" else "")
            + ")"
        )
        for key in crew:
            marks = []
            if key in pins:
                marks.append("pinned")
            answers = by_key[key].answers if key in by_key else {}
            if (
                crews_cfg
                and crews_cfg.facilitator_question
                and truthy(answers.get(crews_cfg.facilitator_question))
            ):
                marks.append("facilitator")
            if before is not None and key in before and before[key] != c:
                marks.append(f"moved from crew {before[key] + 1}")
            elif before is not None and key not in before:
                marks.append("new")
            lines.append(f"  - {name(key)}" + (f" [{', '.join(marks)}]" if marks else ""))
        for criterion in crews_cfg.balance if crews_cfg else []:
            counts = Counter(
                attribute_value(by_key[k].answers.get(criterion.question))
                for k in crew
                if k in by_key
            )
            shown = ", ".join(f"{v or '(none)'} {n}" for v, n in sorted(counts.items()))
            lines.append(f"    {criterion.question} ({criterion.mode.value}): {shown}")
        for key in crew:
            for u in unmet.get(key, []):
                lines.append(f"    ! {name(u['a'])} asked to be with {name(u['b'])}: {u['reason']}")
    breakdown = proposal.get("breakdown", {})
    split = ", ".join(f"{t} {breakdown[t]}" for t in TERMS if t in breakdown)
    lines.append(
        f"Objective {proposal.get('objective')} ({split}); solver status {proposal.get('status')}"
    )
    lines.append(
        "All together requests met."
        if not proposal.get("unmet")
        else f"{len(proposal['unmet'])} together request(s) unmet (see '!' lines)."
    )
    if proposal.get("added") or proposal.get("removed"):
        joined = ", ".join(name(k) for k in proposal.get("added", [])) or "nobody"
        left = ", ".join(name(k) for k in proposal.get("removed", [])) or "nobody"
        lines.append(f"Joined: {joined}; left: {left}")
    if proposal.get("moved"):
        lines.append("Moved: " + ", ".join(name(k) for k in proposal["moved"]))
    for warning in proposal.get("warnings", []):
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def roster_rows(state: Mapping[str, Any], people: Sequence[Registrant]) -> list[list[str]]:
    """Header plus one row per approved member: crew, person, name, call answer."""
    approved = state.get("approved") or {}
    calls = state.get("calls", {})
    names = {r.key: r.name for r in people}
    rows = [["crew", "person", "name", "call"]]
    for c, crew in enumerate(_members(approved.get("assignment", {}))):
        for key in crew:
            rows.append(
                [
                    str(c + 1),
                    key,
                    names.get(key, f"#{key}"),
                    calls.get(key, "NEEDS-ACTION" if approved.get("announced") else ""),
                ]
            )
    return rows


def describe_roster(
    gathering: GatheringConfig, state: Mapping[str, Any], people: Sequence[Registrant]
) -> str:
    approved = state.get("approved")
    if not approved:
        return f"{gathering.name}: no crews approved yet."
    rows = roster_rows(state, people)
    answers = Counter(row[3] for row in rows[1:])
    head = (
        f"{gathering.name}, round {approved['round']}: {len(rows) - 1} people in "
        f"{approved['crews']} crews" + ("" if approved.get("announced") else " (not announced yet)")
    )
    summary = ", ".join(f"{k.lower()} {v}" for k, v in sorted(answers.items()) if k)
    return "\n".join([head, format_table(rows)] + ([f"crew calls: {summary}"] if summary else []))


def roster_csv(state: Mapping[str, Any], people: Sequence[Registrant]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(roster_rows(state, people))
    return out.getvalue()

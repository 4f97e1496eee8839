"""Plain-text views of crew proposals and the call roster, for the terminal and the chat room.

Everything is rendered from the stored flow state (plus current names and answers), so
showing a proposal again never re-runs the solver.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flows.config import CrewsConfig, GatheringConfig
from flows.crews.solver.solve import SolveResult
from gateway.ops.crews.inputs import (
    ANY_LANGUAGE,
    Registrant,
    attribute_value,
    requests,
    truthy,
)
from gateway.ops.reports import format_table

TERMS = ("together", "balance", "repeat", "travel", "moves", "size")


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
        "unmet": [
            {"a": u.a, "b": u.b, "reason": u.reason, "mutual": u.mutual} for u in result.unmet
        ],
        "moved": list(result.moved),
        "changed_crews": list(result.changed_crews),
        **extra,
    }


def _members(assignment: Mapping[str, int]) -> list[list[str]]:
    crews: list[list[str]] = [[] for _ in range(1 + max(assignment.values(), default=-1))]
    for person, crew in sorted(assignment.items(), key=lambda item: int(item[0])):
        crews[crew].append(person)
    return crews


def _pairs(requested: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Requests as unordered pairs, each once (two people asking for each other: one pair)."""
    return list(dict.fromkeys(tuple(sorted(p, key=int)) for p in requested))  # type: ignore[misc]


def _summary(
    gathering: GatheringConfig,
    proposal: Mapping[str, Any],
    members: Sequence[Sequence[str]],
    people: Sequence[Registrant],
    pins: Mapping[str, int],
    is_facilitator: Callable[[str], bool],
) -> list[str]:
    """Crews, sizes, wishes and hard rules, each checked against the assignment shown."""
    crews_cfg = gathering.crews or CrewsConfig()
    assignment: Mapping[str, int] = proposal["assignment"]
    sizes = [len(m) for m in members]
    lo, hi = crews_cfg.min_size, crews_cfg.max_size
    odd = [f"crew {c + 1} has {n}" for c, n in enumerate(sizes) if not lo <= n <= hi]
    lines = [
        f"  crews: {len(members)}; sizes {', '.join(map(str, sizes))} "
        f"(allowed {lo}-{hi}{'; ' + ', '.join(odd) if odd else ''})"
    ]
    placed = [r for r in people if r.key in assignment]
    wishes = _pairs(requests(crews_cfg, crews_cfg.together_question, placed, []))
    if wishes:
        met = sum(1 for a, b in wishes if assignment[a] == assignment[b])
        lines.append(f"  together requests: {met} of {len(wishes)} met")
    rules: list[str] = []
    languages = proposal.get("languages", [])
    if crews_cfg.language_question:
        rules.append(
            "every crew shares a language"
            if len(languages) == len(members) and all(languages)
            else "BROKEN: a crew without a shared language"
        )
    if crews_cfg.one_facilitator_per_crew:
        lacking = [c + 1 for c, m in enumerate(members) if not any(map(is_facilitator, m))]
        rules.append(
            "a facilitator in every crew"
            if not lacking
            else "BROKEN: no facilitator in crew " + ", ".join(map(str, lacking))
        )
    apart = _pairs(requests(crews_cfg, crews_cfg.apart_question, placed, []))
    if apart:
        broken = sum(1 for a, b in apart if assignment[a] == assignment[b])
        rules.append(
            f"{len(apart)} apart request(s) kept"
            if not broken
            else f"BROKEN: {broken} of {len(apart)} apart request(s)"
        )
    held = [k for k in pins if k in assignment]
    if held:
        off = [k for k in held if assignment[k] != pins[k]]
        rules.append(
            f"{len(held)} pin(s) kept" if not off else f"BROKEN: {len(off)} of {len(held)} pin(s)"
        )
    if rules:
        lines.append("  rules: " + "; ".join(rules))
    lines.append(
        "  search: "
        + (
            "proven best possible"
            if proposal.get("status") == "optimal"
            else "best found within the time budget"
        )
    )
    return lines


def describe_proposal(
    gathering: GatheringConfig,
    proposal: Mapping[str, Any],
    people: Sequence[Registrant],
    pins: Mapping[str, int],
    before: Mapping[str, int] | None = None,
    names: Mapping[str, str] | None = None,
) -> str:
    """A summary (crews, sizes, wishes, rules), then one block per crew: each member with
    their marks, languages and balanced answers, how each balance criterion came out, and
    the unmet requests with their reasons."""
    by_key = {r.key: r for r in people}
    crews_cfg = gathering.crews
    assignment: Mapping[str, int] = proposal["assignment"]
    members = _members(assignment)
    languages = proposal.get("languages", [])
    balance = crews_cfg.balance if crews_cfg else []

    def name(key: str) -> str:
        return by_key[key].name if key in by_key else (names or {}).get(key, f"#{key}")

    def answers(key: str) -> Mapping[str, Any]:
        return by_key[key].answers if key in by_key else {}

    def is_facilitator(key: str) -> bool:
        question = crews_cfg.facilitator_question if crews_cfg else None
        return bool(question) and truthy(answers(key).get(question or ""))

    lines = [
        f"{proposal['kind'].capitalize()} proposal, round {proposal.get('round', 1)}, for "
        f"{gathering.name}: {len(assignment)} people in {len(members)} crews",
        *_summary(gathering, proposal, members, people, pins, is_facilitator),
    ]
    unmet: dict[str, list[Mapping[str, Any]]] = {}
    for u in proposal.get("unmet", []):
        unmet.setdefault(u["a"], []).append(u)
    for c, crew in enumerate(members):
        language = languages[c] if c < len(languages) else ""
        lines.append(
            f"Crew {c + 1} ({len(crew)} people"
            + (f", language {language}" if language and language != ANY_LANGUAGE else "")
            + ")"
        )
        for key in crew:
            marks = []
            if is_facilitator(key):
                marks.append("facilitator")
            if key in pins:
                marks.append("pinned")
            if before is not None and key in before and before[key] != c:
                marks.append(f"moved from crew {before[key] + 1}")
            elif before is not None and key not in before:
                marks.append("new")
            details = _details(crews_cfg, answers(key))
            lines.append(
                f"  - {name(key)}"
                + (f" [{', '.join(marks)}]" if marks else "")
                + (f" · {details}" if details else "")
            )
        for criterion in balance:
            counts = Counter(
                _shown(by_key[k].answers.get(criterion.question)) for k in crew if k in by_key
            )
            shown = ", ".join(f"{v or '(none)'} {n}" for v, n in sorted(counts.items()))
            lines.append(f"    {criterion.question} ({criterion.mode.value}): {shown}")
        for key in crew:
            for u in unmet.get(key, []):
                asked = "and {} asked for each other" if u.get("mutual") else "asked to be with {}"
                lines.append(f"    ! {name(u['a'])} {asked.format(name(u['b']))}: {u['reason']}")
    if proposal.get("added") or proposal.get("removed"):
        joined = ", ".join(name(k) for k in proposal.get("added", [])) or "nobody"
        left = ", ".join(name(k) for k in proposal.get("removed", [])) or "nobody"
        lines.append(f"Joined: {joined}; left: {left}")
    if proposal.get("moved"):
        lines.append("Moved: " + ", ".join(name(k) for k in proposal["moved"]))
    for warning in proposal.get("warnings", []):
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """An answer as the organiser wrote the question: yes/no answers read as yes and no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return attribute_value(value)


def _details(crews_cfg: CrewsConfig | None, answers: Mapping[str, Any]) -> str:
    """A person's languages and balanced answers, as the organiser reads them."""
    if crews_cfg is None:
        return ""
    parts = []
    if crews_cfg.language_question:
        spoken = attribute_value(answers.get(crews_cfg.language_question)).replace(";", "/")
        parts.append(f"speaks {spoken or '(not given)'}")
    for criterion in crews_cfg.balance:
        parts.append(f"{criterion.question} {_shown(answers.get(criterion.question)) or '(none)'}")
    return " · ".join(parts)


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

"""A crew proposal as plain text for the organisers: pure, so the flow can reply with it
when a solve finishes, and the `show` command can print it again without re-solving.

Besides the stored proposal (`flows.crews.state.Proposal`) it reads a `view` (plain JSON,
built where the registrations are; see `gateway.ops.crews.inputs.proposal_view`):

    {"names": {"12": "Ana"},                    # placed people and those who left
     "answers": {"12": {"language": "pt", …}},  # only the questions [crews] names
     "together": [["12", "7"]],                 # resolved requests, asker first
     "apart": [["12", "9"]]}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flows.config import CrewsConfig, GatheringConfig
from flows.crews.solver.model import Status
from flows.crews.state import Proposal, Unmet

#: Everyone shares this language when the gathering asks no language question.
ANY_LANGUAGE = "any"


def truthy(value: Any) -> bool:
    """A yes/no answer (stored as a bool; older or imported answers may be text)."""
    return value is True or (
        isinstance(value, str) and value.strip().lower() in ("yes", "y", "true")
    )


def attribute_value(value: Any) -> str:
    """An answer as one categorical value (several choices become one sorted combination)."""
    if isinstance(value, list):
        return ";".join(sorted(str(v) for v in value))
    return "" if value is None or value == "" else str(value)


def members(assignment: Mapping[str, int]) -> list[list[str]]:
    """Each crew's people (keys in person order), by crew index."""
    crews: list[list[str]] = [[] for _ in range(1 + max(assignment.values(), default=-1))]
    for person, crew in sorted(assignment.items(), key=lambda item: int(item[0])):
        crews[crew].append(person)
    return crews


def _pairs(requested: Sequence[Sequence[str]], placed: Mapping[str, int]) -> list[tuple[str, str]]:
    """Requests between placed people as unordered pairs, each once (two people asking for
    each other: one pair)."""
    pairs = (tuple(sorted((a, b), key=int)) for a, b in requested if a in placed and b in placed)
    return list(dict.fromkeys((a, b) for a, b in pairs))


def _summary(
    gathering: GatheringConfig,
    proposal: Proposal,
    crews: Sequence[Sequence[str]],
    view: Mapping[str, Any],
    pins: Mapping[str, int],
    is_facilitator: Callable[[str], bool],
) -> list[str]:
    """Crews, sizes, wishes and hard rules, each checked against the assignment shown."""
    crews_cfg = gathering.crews or CrewsConfig()
    assignment = proposal.assignment
    sizes = [len(m) for m in crews]
    lo, hi = crews_cfg.min_size, crews_cfg.max_size
    odd = [f"crew {c + 1} has {n}" for c, n in enumerate(sizes) if not lo <= n <= hi]
    lines = [
        f"  crews: {len(crews)}; sizes {', '.join(map(str, sizes))} "
        f"(allowed {lo}-{hi}{'; ' + ', '.join(odd) if odd else ''})"
    ]
    wishes = _pairs(view.get("together", []), assignment)
    if wishes:
        met = sum(1 for a, b in wishes if assignment[a] == assignment[b])
        lines.append(f"  together requests: {met} of {len(wishes)} met")
    rules: list[str] = []
    languages = proposal.languages
    if crews_cfg.language_question:
        rules.append(
            "every crew shares a language"
            if len(languages) == len(crews) and all(languages)
            else "BROKEN: a crew without a shared language"
        )
    if crews_cfg.one_facilitator_per_crew:
        lacking = [c + 1 for c, m in enumerate(crews) if not any(map(is_facilitator, m))]
        rules.append(
            "a facilitator in every crew"
            if not lacking
            else "BROKEN: no facilitator in crew " + ", ".join(map(str, lacking))
        )
    apart = _pairs(view.get("apart", []), assignment)
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
            if proposal.status == Status.OPTIMAL
            else "best found within the time budget"
        )
    )
    return lines


def describe_proposal(
    gathering: GatheringConfig,
    proposal: Proposal,
    view: Mapping[str, Any],
    pins: Mapping[str, int],
    before: Mapping[str, int] | None = None,
) -> str:
    """A summary (crews, sizes, wishes, rules), then one block per crew: each member with
    their marks, languages and balanced answers, how each balance criterion came out, and
    the unmet requests with their reasons."""
    crews_cfg = gathering.crews
    assignment = proposal.assignment
    crews = members(assignment)
    languages = proposal.languages
    balance = crews_cfg.balance if crews_cfg else []
    names: Mapping[str, str] = view.get("names", {})
    all_answers: Mapping[str, Mapping[str, Any]] = view.get("answers", {})

    def name(key: str) -> str:
        return names.get(key, f"#{key}")

    def answers(key: str) -> Mapping[str, Any]:
        return all_answers.get(key, {})

    def is_facilitator(key: str) -> bool:
        question = crews_cfg.facilitator_question if crews_cfg else None
        return bool(question) and truthy(answers(key).get(question or ""))

    lines = [
        f"{proposal.kind.capitalize()} proposal, round {proposal.round}, for "
        f"{gathering.name}: {len(assignment)} people in {len(crews)} crews",
        *_summary(gathering, proposal, crews, view, pins, is_facilitator),
    ]
    unmet: dict[str, list[Unmet]] = {}
    for u in proposal.unmet:
        unmet.setdefault(u.a, []).append(u)
    for c, crew in enumerate(crews):
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
                _shown(all_answers[k].get(criterion.question)) for k in crew if k in all_answers
            )
            shown = ", ".join(f"{v or '(none)'} {n}" for v, n in sorted(counts.items()))
            lines.append(f"    {criterion.question} ({criterion.mode.value}): {shown}")
        for key in crew:
            for u in unmet.get(key, []):
                asked = "and {} asked for each other" if u.mutual else "asked to be with {}"
                lines.append(f"    ! {name(u.a)} {asked.format(name(u.b))}: {u.reason}")
    if proposal.added or proposal.removed:
        joined = ", ".join(name(k) for k in proposal.added) or "nobody"
        left = ", ".join(name(k) for k in proposal.removed) or "nobody"
        lines.append(f"Joined: {joined}; left: {left}")
    if proposal.moved:
        lines.append("Moved: " + ", ".join(name(k) for k in proposal.moved))
    for warning in proposal.warnings:
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

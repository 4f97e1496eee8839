"""The crews flow's job: a solver input in, a proposal out (it runs in the job runner's
worker, seconds of CPU, never inside a step).

Payload (built by `gateway.ops.crews.commands`, checked and numbered by the flow):

    {"request": 3,                          # the flow's count: a newer request wins
     "kind": "initial" | "repair" | "round",
     "input": SolverInput as JSON, "options": SolveOptions as JSON,
     "approved": {"12": 0} or null,         # repair: the approved crews to change least
     "removed": ["9"],                      # repair: who left them
     "extra": {"warnings": […], …},         # stored with the proposal as they are
     "view": {…}}                           # names and answers for the description

Result: {"request", "proposal": …, "view": …} for a valid assignment, else
{"request", "reasons": […]}. The job's payload is dropped once its result is applied
(`finish_job`), so the names and answers it carries are not kept with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import TypeAdapter

from flows.crews.solver.solve import (
    InvalidInput,
    SolveOptions,
    SolveResult,
    SolverInput,
    repair,
    solve,
)

SOLVE = "solve"
#: The objective's terms, as the proposal lists them.
TERMS = ("together", "balance", "repeat", "travel", "moves", "size")

_INPUT = TypeAdapter(SolverInput)
_OPTIONS = TypeAdapter(SolveOptions)


def input_to_json(inp: SolverInput) -> dict[str, Any]:
    data: dict[str, Any] = _INPUT.dump_python(inp, mode="json")
    return data


def options_to_json(options: SolveOptions) -> dict[str, Any]:
    data: dict[str, Any] = _OPTIONS.dump_python(options, mode="json")
    return data


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


def run_solve(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """Solve (or repair) as the payload asks; the proposal, or why there is none."""
    inp = _INPUT.validate_python(payload["input"])
    options = _OPTIONS.validate_python(payload.get("options", {}))
    kind = str(payload["kind"])
    request = payload.get("request")
    try:
        if kind == "repair":
            approved: Mapping[str, int] = payload.get("approved") or {}
            old = tuple(p for p in inp.people if p.id in approved)
            new = tuple(p for p in inp.people if p.id not in approved)
            result = repair(
                replace(inp, people=old), approved, new, payload.get("removed", []), options
            )
        else:
            result = solve(inp, options)
    except InvalidInput as exc:
        return {"request": request, "reasons": [str(exc)]}
    if not result.valid:
        return {"request": request, "reasons": list(result.reasons)}
    return {
        "request": request,
        "proposal": proposal_payload(result, kind, **payload.get("extra", {})),
        "view": payload.get("view", {}),
    }

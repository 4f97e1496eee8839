"""Flow states in pure step tests, as the engine hands them over and stores them.

Tests write states the way they are stored (plain JSON-like dicts), so that a test reads like
the database; `context` validates them into the flow's models like the engine does, and
`stored` turns what a step returned back into the JSON the engine would write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from flows.base import Flow, FlowState, Outcome, StepContext, state_model


def load(
    flow: Flow, state: Mapping[str, Any] | FlowState, *, gathering_run: bool = False
) -> FlowState:
    """A state as the engine gives it to `flow`'s step: given as stored JSON, or as a step
    returned it (then it makes the round trip through the database's JSON first)."""
    as_json = state.to_stored() if isinstance(state, FlowState) else json.dumps(dict(state))
    return state_model(flow, gathering_run).from_stored(as_json)


def context(flow: Flow, **fields: Any) -> StepContext[Any, Any]:
    """A StepContext whose `state` and `shared` (given as stored JSON) are validated."""
    gathering_run = int(fields["person"].id) == 0
    fields["state"] = load(flow, fields.get("state", {}), gathering_run=gathering_run)
    fields["shared"] = load(flow, fields.get("shared", {}), gathering_run=True)
    return StepContext(**fields)


def stored(state: FlowState | None) -> dict[str, Any] | None:
    """What the engine would write for a step's returned state (None: unchanged)."""
    if state is None:
        return None
    decoded: dict[str, Any] = json.loads(state.to_stored())
    return decoded


def as_stored(outcome: Outcome) -> Outcome:
    """The outcome with its states as the JSON the engine would write (plain dicts, which
    only tests put in an Outcome: they compare them with what they wrote)."""
    return replace(
        outcome,
        state=stored(outcome.state),
        shared=stored(outcome.shared),
    )

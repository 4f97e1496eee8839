"""Flow states between the database's JSON and the flows' models (flows.base.FlowState).

A state is validated once, when the engine loads it for a step, straight from the stored JSON
string and strictly (`FlowState.from_stored`: pydantic parses and checks in one pass, no
`json.loads` first, and coerces nothing JSON has a type for); what a step returns is
written with `model_dump_json`, which is the JSON of `model_dump(mode="json")`. Stored JSON
that does not fit the model raises `BadState` naming the run, before any step runs: the
message fails as a whole and the organisers hear of it (the engine's dead letters).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import ValidationError

from flows.base import Flow, FlowState, State, state_model
from gateway.model import GATHERING_SUBJECT, Target
from gateway.store.db import dumps


class BadState(Exception):
    """A stored state that does not fit its flow's model (a bug or a hand-edited row)."""


class StateCodec:
    """Loads and dumps the states of the flows given, by their models."""

    def __init__(self, flows: Mapping[str, Flow]) -> None:
        self.flows = flows
        #: (flow, gathering run?) → model: a runtime protocol check costs more than a load.
        self._models: dict[tuple[str, bool], type[FlowState] | None] = {}

    def model(self, target: Target) -> type[FlowState] | None:
        key = (target.flow, target.person == GATHERING_SUBJECT)
        if key not in self._models:
            self._models[key] = state_model(self.flows.get(target.flow), key[1])
        return self._models[key]

    def load(self, target: Target, stored: str | None) -> State:
        """The run's state; the model's defaults (or {}) when the run does not exist yet."""
        model = self.model(target)
        if model is None:  # transitional: a flow that still keeps a plain dict
            return json.loads(stored) if stored is not None else {}
        if stored is None:
            return model()
        try:
            return model.from_stored(stored)
        except ValidationError as error:
            run = f"{target.gathering}/{target.flow}/person {target.person}"
            raise BadState(f"{run}: the stored state is no {model.__name__}: {error}") from error

    def dump(self, target: Target, state: State) -> str:
        model = self.model(target)
        if model is None:  # transitional, as above
            if not isinstance(state, dict):
                raise TypeError(f"{target}: a flow without models returned {type(state).__name__}")
            return dumps(state)
        if type(state) is not model:
            # A step that returned the wrong class would store a shape its next load refuses.
            raise TypeError(f"{target}: expected {model.__name__}, got {type(state).__name__}")
        return state.to_stored()

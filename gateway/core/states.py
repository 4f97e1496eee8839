"""Flow states between the database's JSON and the flows' models (flows.base.FlowState).

A state is validated once, when the engine loads it for a step (the gathering-level one only
if the step reads it, see `StepContext.shared`), straight from the stored JSON
string and strictly (`FlowState.from_stored`: pydantic parses and checks in one pass, no
`json.loads` first, and coerces nothing JSON has a type for); what a step returns is
written with `FlowState.to_stored` (`model_dump_json`, the JSON of `model_dump(mode="json")`).
Stored JSON that does not fit the model raises `BadState` naming the run, before the step goes
on: the message fails as a whole and the organisers hear of it (the engine's dead letters).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from flows.base import Flow, FlowState, check_models, state_model
from gateway.model import GATHERING_SUBJECT, Target


class BadState(Exception):
    """A stored state that does not fit its flow's model (a bug or a hand-edited row)."""


class StateCodec:
    """Loads and dumps the states of the flows given, by their models. A flow that declares
    none is refused here, when the engine is built, not at its first message."""

    def __init__(self, flows: Mapping[str, Flow]) -> None:
        for name, flow in flows.items():
            check_models(name, flow)
        #: (flow, gathering run?) → model.
        self._models = {
            (name, gathering_run): state_model(flow, gathering_run)
            for name, flow in flows.items()
            for gathering_run in (False, True)
        }

    def model(self, target: Target) -> type[FlowState]:
        return self._models[(target.flow, target.person == GATHERING_SUBJECT)]

    def load(self, target: Target, stored: str | None) -> FlowState:
        """The run's state; the model's defaults when the run does not exist yet."""
        model = self.model(target)
        if stored is None:
            return model()
        try:
            return model.from_stored(stored)
        except ValidationError as error:
            run = f"{target.gathering}/{target.flow}/person {target.person}"
            raise BadState(f"{run}: the stored state is no {model.__name__}: {error}") from error

    def dump(self, target: Target, state: FlowState) -> str:
        model = self.model(target)
        if type(state) is not model:
            # A step that returned the wrong class would store a shape its next load refuses.
            raise TypeError(f"{target}: expected {model.__name__}, got {type(state).__name__}")
        return state.to_stored()

"""How a person is named to other participants."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.base import RunView
from flows.config import GatheringConfig
from gateway.model import PersonId


def answers_of(run: RunView | None) -> Mapping[str, Any]:
    """The registration answers in a run's state ({} when there are none)."""
    if run is None:
        return {}
    answers = run.state.get("answers", {})
    return answers if isinstance(answers, Mapping) else {}


def chosen_name(gathering: GatheringConfig, person: PersonId, registration: RunView | None) -> str:
    """The name the person chose (the registration's name question), else the name their
    mail client or Matrix profile shows, else their number."""
    chosen_id = gathering.registration.chosen_name_question
    chosen = answers_of(registration).get(chosen_id) if registration and chosen_id else None
    name = (str(chosen).strip() if chosen else "") or (
        registration.display_name if registration else ""
    )
    return name or f"#{person}"

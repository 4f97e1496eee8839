"""The proposal table organisers read: a checked summary first, then who is where and why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flows.config import GatheringConfig
from flows.crews.describe import describe_proposal
from flows.crews.job import proposal_payload
from flows.crews.solver.solve import SolveOptions, solve
from flows.crews.state import Proposal
from gateway.model import PersonId
from gateway.ops.crews.inputs import Registrant, build_input, proposal_view

NOW = datetime(2027, 5, 3, 10, 0, tzinfo=UTC)


def gathering() -> GatheringConfig:
    return GatheringConfig.model_validate(
        {
            "slug": "camp",
            "name": "Camp",
            "timezone": "Europe/Lisbon",
            "starts": "2027-07-01",
            "ends": "2027-07-05",
            "capacity": 40,
            "crews": {
                "min_size": 4,
                "max_size": 4,
                "language_question": "langs",
                "together_question": "buddy",
                "apart_question": "avoid",
                "facilitator_question": "lead",
                "one_facilitator_per_crew": True,
                "balance": [{"question": "exp"}],
            },
        }
    )


def registrant(i: int, langs: list[str], **answers: Any) -> Registrant:
    return Registrant(
        PersonId(i + 1),
        f"Name{i}",
        {"langs": langs, "lead": i in (0, 4), "exp": "new" if i % 2 else "old", **answers},
    )


def test_proposal_opens_with_a_checked_summary_and_shows_each_persons_answers() -> None:
    people = [registrant(i, ["en"]) for i in range(4)] + [
        registrant(i, ["pt"], buddy="Name1" if i == 5 else "") for i in range(4, 8)
    ]
    people[2] = registrant(2, ["en"], buddy="Name3")
    people[6] = registrant(6, ["pt"], avoid="Name1")
    built = build_input(gathering(), people, pins={"1": 0})
    result = solve(built.input, SolveOptions(time_budget=2.0, seed=0, deterministic=True))
    stored = {**proposal_payload(result, "initial"), "round": 1, "proposed_at": NOW}
    proposal = Proposal.model_validate(stored)
    view = proposal_view(gathering(), people, {})
    text = describe_proposal(gathering(), proposal, view, {"1": 0})
    lines = text.splitlines()
    first_crew = next(n for n, line in enumerate(lines) if line.startswith("Crew "))
    summary = "\n".join(lines[:first_crew])
    assert "crews: 2; sizes 4, 4 (allowed 4-4)" in summary
    # Name2 asked for Name3 (both English speakers) and Name5 (Portuguese) for Name1
    # (English): one of two met, and the unmet one is told the way it was asked.
    assert "together requests: 1 of 2 met" in summary
    assert "rules: every crew shares a language; a facilitator in every crew" in summary
    assert "1 apart request(s) kept; 1 pin(s) kept" in summary
    body = "\n".join(lines[first_crew:])
    assert "  - Name0 [facilitator, pinned] · speaks en · exp old" in body
    assert "  - Name5 · speaks pt · exp new" in body
    assert "! Name5 asked to be with Name1: they share no language" in body
    assert "cost" not in text.lower() and "objective" not in text.lower()


def test_the_view_holds_only_the_answers_crews_ask_about() -> None:
    people = [registrant(0, ["en"], diet="vegan", buddy="Name1"), registrant(1, ["pt"])]
    view = proposal_view(gathering(), people, {"9": "Left Early"})
    assert view["names"] == {"9": "Left Early", "1": "Name0", "2": "Name1"}
    assert view["answers"]["1"] == {"langs": ["en"], "lead": True, "exp": "old"}
    assert view["together"] == [["1", "2"]] and view["apart"] == []

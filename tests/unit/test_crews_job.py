"""The crews job: a solver input as JSON in (it crosses a process and the jobs table), a
proposal or the reasons there is none out."""

from __future__ import annotations

import json

from flows.crews.job import input_to_json, options_to_json, run_solve
from flows.crews.solver.solve import PastPair, Person, Sizing, SolveOptions, SolverInput


def people(n: int) -> tuple[Person, ...]:
    return tuple(
        Person(
            str(i), f"P{i}", frozenset({"en"}), facilitator=i <= 2, attributes={"exp": str(i % 2)}
        )
        for i in range(1, n + 1)
    )


def payload(inp: SolverInput, kind: str = "initial", **more: object) -> dict[str, object]:
    options = SolveOptions(time_budget=2.0, seed=0, deterministic=True)
    data = {"request": 7, "kind": kind, "input": input_to_json(inp), **more}
    # Through JSON, as the jobs table stores it.
    return json.loads(json.dumps({**data, "options": options_to_json(options)}))


def test_the_input_survives_json() -> None:
    inp = SolverInput(
        people=people(4),
        sizing=Sizing(min_size=2, max_size=2),
        together=(("1", "3"),),
        past_pairs=(PastPair("1", "2", 2),),
        pins={"4": 1},
        previous={"1": 0},
    )
    result = run_solve(payload(inp))
    assert result["request"] == 7
    assignment = result["proposal"]["assignment"]
    assert assignment["1"] == assignment["3"] and assignment["4"] == 1


def test_a_proposal_carries_the_extra_fields_and_the_view_back() -> None:
    inp = SolverInput(people=people(6), sizing=Sizing(min_size=3, max_size=3))
    view = {"names": {"1": "P1"}}
    result = run_solve(payload(inp, extra={"warnings": ["w"]}, view=view))
    assert result["proposal"]["warnings"] == ["w"] and result["proposal"]["kind"] == "initial"
    assert sorted(result["proposal"]["assignment"]) == [str(i) for i in range(1, 7)]
    assert result["view"] == view


def test_a_repair_moves_only_whom_it_must() -> None:
    approved = {"1": 0, "3": 0, "5": 0, "2": 1, "4": 1, "6": 1}
    inp = SolverInput(
        people=people(7), sizing=Sizing(min_size=3, max_size=4), require_facilitator=False
    )
    result = run_solve(payload(inp, "repair", approved=approved, removed=[]))
    proposal = result["proposal"]
    assert proposal["kind"] == "repair" and "7" in proposal["assignment"]
    assert proposal["moved"] == []


def test_impossible_crews_give_reasons_not_a_proposal() -> None:
    inp = SolverInput(people=people(3), sizing=Sizing(min_size=4, max_size=4))
    result = run_solve(payload(inp))
    assert "proposal" not in result and result["reasons"] and result["request"] == 7

"""Unmet together requests: who asked, and reasons that the assignment bears out."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import HealthCheck, given, settings

from flows.crews.solver.explain import build_result
from flows.crews.solver.model import Status
from flows.crews.solver.problem import Problem, compile_problem, evaluate, violations
from flows.crews.solver.solve import Sizing, SolveOptions, SolverInput, Weights, solve
from tests.unit.test_crews_solver import FAST, camps, person


def test_unmet_request_names_who_asked_and_whether_it_was_mutual() -> None:
    people = tuple(person(f"e{i}", "en", fac=i == 0) for i in range(4)) + tuple(
        person(f"q{i}", "pt", fac=i == 0) for i in range(4)
    )
    sizing = Sizing(min_size=4, max_size=4, n_crews=2)
    one_way = solve(SolverInput(people, sizing, together=(("q1", "e1"),)), FAST)
    assert [(u.a, u.b, u.mutual) for u in one_way.unmet] == [("q1", "e1", False)]
    both = solve(SolverInput(people, sizing, together=(("q2", "e2"), ("e2", "q2"))), FAST)
    assert [(u.a, u.b, u.mutual) for u in both.unmet] == [("q2", "e2", True)]


def _together_options(pb: Problem, i: int, j: int) -> list[int]:
    """Objectives of every valid assignment that puts i and j in one crew."""
    return [
        evaluate(pb, crew_of).total
        for crew_of in itertools.product(range(pb.k), repeat=pb.n)
        if crew_of[i] == crew_of[j] and not violations(pb, crew_of)
    ]


def _check_reason(pb: Problem, crew_of: Sequence[int], i: int, j: int, reason: str) -> None:
    """Every reason form the solver prints, checked against the assignment and, where it
    speaks of alternatives, against all of them."""
    now = evaluate(pb, crew_of).total
    if reason.startswith("they are pinned to different crews"):
        assert pb.pinned[i] >= 0 and pb.pinned[j] >= 0 and pb.pinned[i] != pb.pinned[j]
    elif "language" in reason and "speak" not in reason:  # "share no language" and the like
        assert not pb.lang_mask[i] & pb.lang_mask[j], reason
    elif reason.startswith("they are also marked not-with"):
        assert j in pb.not_with[i]
    elif reason.startswith("no valid assignment puts them together"):
        assert _together_options(pb, i, j) == [], reason
    elif reason.startswith("traded off against"):
        options = _together_options(pb, i, j)
        assert options and min(options) >= now, reason
    else:
        raise AssertionError(f"unexpected reason on a proven-optimal answer: {reason!r}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(camps(max_people=8))
def test_every_unmet_reason_holds_in_the_assignment(inp: SolverInput) -> None:
    res = solve(inp, FAST)
    if res.status is not Status.OPTIMAL:
        return
    pb = compile_problem(inp)
    crew_of = [res.assignment[pid] for pid in pb.ids]
    for u in res.unmet:
        _check_reason(pb, crew_of, pb.index[u.a], pb.index[u.b], u.reason)


def _pinned_crew_camp() -> tuple[SolverInput, dict[str, int]]:
    """Yan (English only) asks for Xu, who is pinned to crew 1 and speaks English and
    Portuguese; crew 1 also holds three Portuguese-only speakers, so Yan cannot simply join.
    Crew 1 can become an English crew once they swap with bilinguals in crew 2."""
    people = (
        (person("xu", "en;pt"),)
        + tuple(person(f"pt{i}", "pt") for i in range(3))
        + tuple(person(f"bi{i}", "en;pt") for i in range(4))
        + (person("yan", "en"),)
        + tuple(person(f"en{i}", "en") for i in range(11))
    )
    start = {"xu": 0, **{f"pt{i}": 0 for i in range(3)}, **{f"bi{i}": 1 for i in range(4)}}
    start |= {"yan": 2, **{f"en{i}": 2 + (i + 1) // 4 for i in range(11)}}
    inp = SolverInput(
        people,
        Sizing(min_size=4, max_size=4, n_crews=5),
        together=(("yan", "xu"),),
        pins={"xu": 0},
        require_facilitator=False,
        weights=replace(Weights(), move=0),
    )
    return inp, start


def test_wish_into_a_pinned_crew_of_another_language_is_not_blamed_on_languages() -> None:
    inp, start = _pinned_crew_camp()
    pb = compile_problem(inp)
    crew_of = [start[pid] for pid in pb.ids]
    assert violations(pb, crew_of) == []
    told = build_result(pb, crew_of, Status.FEASIBLE, None, 0.0)
    # The two share English and a better valid assignment unites them: the honest answer.
    assert [(u.a, u.b, u.reason) for u in told.unmet] == [
        ("yan", "xu", "could be met by a change the search did not reach in its time budget")
    ]


def test_wish_into_a_pinned_crew_of_another_language_is_met_when_the_crew_can_change() -> None:
    from flows.crews.solver.wishes import wish_pass  # here: the module is newer than the test

    inp, start = _pinned_crew_camp()
    pb = compile_problem(inp)
    crew_of = [start[pid] for pid in pb.ids]
    better, verdicts = wish_pass(pb, crew_of, float("inf"), 0, True)
    assert better[pb.index["yan"]] == better[pb.index["xu"]] == 0
    assert violations(pb, better) == [] and verdicts == {}
    assert evaluate(pb, better).total < evaluate(pb, crew_of).total
    res = solve(
        replace(inp, previous=start),
        SolveOptions(time_budget=2.0, seed=0, exact_max_people=0, deterministic=True),
    )
    assert res.valid and res.unmet == ()

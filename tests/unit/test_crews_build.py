"""The first valid answer (no luck involved), the crew-size term and the time budget."""

from __future__ import annotations

import pytest

from bench.instances import generate, pin_facilitators
from flows.crews.solver.problem import compile_problem, evaluate, violations
from flows.crews.solver.solve import Sizing, SolveOptions, SolverInput, Status, solve
from tests.unit.test_crews_solver import FAST, person


def pinned_facilitators(n: int, seed: int, shuffle: int) -> SolverInput:
    inp = generate(n, seed)
    return pin_facilitators(inp, compile_problem(inp).k, shuffle)


@pytest.mark.parametrize(("seed", "shuffle"), [(1, 2), (9, 0), (9, 3)])
def test_construction_respects_pinned_facilitators_without_luck(seed: int, shuffle: int) -> None:
    from flows.crews.solver.build import construct  # here: the module is newer than the test

    pb = compile_problem(pinned_facilitators(300, seed, shuffle))
    first = construct(pb)
    assert first is not None and violations(pb, first) == []
    assert construct(pb) == first


def test_pinned_facilitators_at_300_give_a_valid_camp_on_a_small_budget() -> None:
    res = solve(
        pinned_facilitators(300, 9, 0), SolveOptions(time_budget=1.0, seed=0, deterministic=True)
    )
    assert res.valid


def test_crew_sizes_even_out_when_nothing_else_matters() -> None:
    people = tuple(person(f"p{i}", fac=True) for i in range(12))
    res = solve(SolverInput(people, Sizing(min_size=2, max_size=8, n_crews=3)), FAST)
    assert res.status is Status.OPTIMAL
    assert sorted(len(c.members) for c in res.crews) == [4, 4, 4]
    pb = compile_problem(SolverInput(people, Sizing(min_size=2, max_size=8, n_crews=3)))
    lopsided = [0] * 2 + [1] * 2 + [2] * 8
    assert evaluate(pb, lopsided).size > evaluate(pb, [p % 3 for p in range(12)]).size == 0


def test_the_budget_is_spent_when_optimality_is_not_proven() -> None:
    """`--seconds` is a budget: a camp above the exact size keeps searching until it ends
    (runs used to stop by work done, after about half of it). A slower machine only makes
    a run longer, so this cannot fail on timing."""
    res = solve(generate(60, 0), SolveOptions(time_budget=2.0, seed=0))
    assert res.status is Status.FEASIBLE and res.elapsed >= 1.5

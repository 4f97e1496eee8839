"""Crew solver: hard constraints, optimality, stability, repairs and explanations."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.instances import generate
from flows.crews.solver import cpsat
from flows.crews.solver.build import construct
from flows.crews.solver.local import State
from flows.crews.solver.pair import PairSolver
from flows.crews.solver.problem import compile_problem, crew_members, evaluate, violations
from flows.crews.solver.solve import (
    AttributeRule,
    Mode,
    PastPair,
    Person,
    Sizing,
    SolveOptions,
    SolverInput,
    Status,
    Weights,
    repair,
    round_pairs,
    solve,
)

FAST = SolveOptions(time_budget=5.0, seed=3, deterministic=True)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def person(pid: str, langs: str = "en", fac: bool = False, **attrs: str) -> Person:
    return Person(pid, pid.upper(), frozenset(langs.split(";")), fac, attrs)


@st.composite
def camps(draw: st.DrawFn, max_people: int = 12, hard: bool = True) -> SolverInput:
    """Small random camps; with `hard` they carry every kind of hard constraint."""
    n = draw(st.integers(4, max_people))
    ids = [f"p{i}" for i in range(n)]
    lang_sets = ["en", "en", "en;pt", "pt"] if hard else ["en"]
    people = tuple(
        person(
            pid,
            draw(st.sampled_from(lang_sets)),
            draw(st.booleans()) if hard else False,
            exp=draw(st.sampled_from(["new", "old", "mid"])),
            tz=draw(st.sampled_from(["a", "b"])),
            travel_group=draw(st.sampled_from(["", "", "t1", "t2"])),
        )
        for pid in ids
    )
    pair = st.tuples(st.sampled_from(ids), st.sampled_from(ids)).filter(lambda p: p[0] != p[1])
    k = draw(st.integers(1, 3))
    sizing = Sizing(
        min_size=draw(st.integers(1, 3)) if hard else 1,
        max_size=draw(st.integers(3, 6)) if hard else n,
        n_crews=k,
    )
    pins = (
        draw(st.dictionaries(st.sampled_from(ids), st.integers(0, k - 1), max_size=2))
        if hard
        else {}
    )
    return SolverInput(
        people=people,
        sizing=sizing,
        together=tuple(draw(st.lists(pair, max_size=3))),
        not_with=tuple(draw(st.lists(pair, max_size=3))) if hard else (),
        pins=pins,
        require_facilitator=hard and draw(st.booleans()),
        attributes=(AttributeRule("exp", Mode.SPREAD, 2), AttributeRule("tz", Mode.CLUSTER, 1)),
        past_pairs=tuple(PastPair(a, b, 2) for a, b in draw(st.lists(pair, max_size=3))),
        previous=draw(st.none() | st.just({pid: i % k for i, pid in enumerate(ids)})),
    )


def brute_force(inp: SolverInput) -> int | None:
    """Exact optimum by enumerating every assignment (None if none is valid)."""
    pb = compile_problem(inp)
    best: int | None = None
    for crew_of in itertools.product(range(pb.k), repeat=pb.n):
        if not violations(pb, crew_of):
            cost = evaluate(pb, crew_of).total
            best = cost if best is None or cost < best else best
    return best


# ---- hard constraints, infeasibility, optimality -------------------------------------------


@SETTINGS
@given(camps(max_people=9))
def test_solution_is_valid_and_optimal_or_infeasibility_is_explained(inp: SolverInput) -> None:
    res = solve(inp, FAST)
    exact = brute_force(inp)
    if exact is None:
        assert res.status is Status.INFEASIBLE
        assert res.reasons and all(r.strip() for r in res.reasons)
        return
    assert res.status is Status.OPTIMAL
    pb = compile_problem(inp)
    crew_of = [res.assignment[pid] for pid in pb.ids]
    assert violations(pb, crew_of) == []
    assert res.objective == exact == evaluate(pb, crew_of).total
    for pid, c in inp.pins.items():
        assert res.assignment[pid] == c


@SETTINGS
@given(camps(max_people=14, hard=False), st.randoms(use_true_random=False))
def test_cpsat_objective_equals_evaluate(inp: SolverInput, rnd: random.Random) -> None:
    """One objective: the CP-SAT model, fixed to any assignment, scores it like `evaluate`."""
    pb = compile_problem(inp)
    # Canonical labels, as the model breaks the symmetry between interchangeable crews.
    crew_of = cpsat.canonical(pb, [rnd.randrange(pb.k) for _ in range(pb.n)])
    built = cpsat.build(pb, range(pb.n), range(pb.k))
    for (p, c), var in built.x.items():
        built.model.add(var == int(crew_of[p] == c))
    res = cpsat.solve(built, pb, 10.0, 0, 1, True)
    if violations(pb, crew_of):  # only the size bounds can fail here
        assert res.status == "infeasible"
    else:
        assert res.objective == evaluate(pb, crew_of).total


@SETTINGS
@given(camps(max_people=14), st.randoms(use_true_random=False))
def test_incremental_deltas_match_full_evaluation(inp: SolverInput, rnd: random.Random) -> None:
    pb = compile_problem(inp)
    state = State(pb, [rnd.randrange(pb.k) for _ in range(pb.n)])
    for _ in range(60):
        p, q = rnd.randrange(pb.n), rnd.randrange(pb.n)
        if state.crew_of[p] != state.crew_of[q] and rnd.random() < 0.5:
            state.apply_swap(p, q, state.swap_delta(p, q))
        else:
            b = rnd.randrange(pb.k)
            if b != state.crew_of[p]:
                state.apply_move(p, b, state.move_delta(p, b))
        assert state.cost == evaluate(pb, state.crew_of).total


@settings(max_examples=15, deadline=None)
@given(st.integers(33, 60), st.integers(0, 1000), st.booleans(), st.randoms(use_true_random=False))
def test_pair_resolve_finds_the_best_split_of_two_crews(
    n: int, seed: int, extras: bool, rnd: random.Random
) -> None:
    """The array-based two-crew re-solve agrees with enumerating the splits through
    `violations` and `evaluate`, and its delta is the exact objective change."""
    base = generate(n, seed)
    start = construct(compile_problem(base))
    if start is None:  # some generated camps have no valid assignment at all (n=58, seed=0)
        return
    members = crew_members(compile_problem(base), start)
    a = start[rnd.randrange(n)]
    b = min((c for c in range(len(members)) if c != a), key=lambda c: len(members[c]))
    people = members[a] + members[b]
    ids = [p.id for p in base.people]
    inp = (
        replace(
            base,
            pins={ids[people[0]]: a},
            past_pairs=(PastPair(ids[people[1]], ids[people[-1]], 2),),
            previous={ids[p]: rnd.choice([a, b, start[p]]) for p in range(0, n, 2)},
        )
        if extras
        else base
    )  # pins and previous crews make the two crews unequal
    pb = compile_problem(inp)
    before = evaluate(pb, start).total
    best = before
    for sides in itertools.product((a, b), repeat=len(people)):
        trial = list(start)
        for p, c in zip(people, sides, strict=True):
            trial[p] = c
        if not violations(pb, trial):
            best = min(best, evaluate(pb, trial).total)
    split = PairSolver(pb).best_split(start, members[a], members[b], a, b)
    if split is None:
        assert best == before
        return
    after = list(start)
    for p, c in zip(split.people, split.crew_of, strict=True):
        after[p] = c
    assert violations(pb, after) == []
    assert evaluate(pb, after).total == before + split.delta == best


@pytest.mark.parametrize(
    "inp, expected",
    [
        (
            SolverInput(
                tuple(person(f"p{i}", fac=True) for i in range(12)),
                Sizing(min_size=5, max_size=8, n_crews=3),
            ),
            "12 people cannot fill 3 crews of at least 5",
        ),
        (
            SolverInput(
                tuple(person(f"p{i}", "pt" if i < 3 else "en", fac=i >= 3) for i in range(12)),
                Sizing(min_size=3, max_size=6, n_crews=2),
            ),
            "3 pt-only speakers but no pt-speaking facilitator",
        ),
        (
            SolverInput(
                tuple(person(p, fac=True) for p in ["ana", "ben", "cy", "di"]),
                Sizing(min_size=1, max_size=4, n_crews=2),
                not_with=(("ana", "ben"),),
                pins={"ana": 1, "ben": 1},
            ),
            "ANA and BEN are both pinned to crew 2 but marked not-with",
        ),
        (
            SolverInput(
                tuple(person(f"p{i}", fac=i == 0) for i in range(8)),
                Sizing(min_size=2, max_size=4, n_crews=2),
            ),
            "only 1 facilitator for 2 crews (every crew needs one)",
        ),
    ],
)
def test_common_infeasibility_is_named_before_search(inp: SolverInput, expected: str) -> None:
    res = solve(inp, FAST)
    assert res.status is Status.INFEASIBLE
    assert expected in res.reasons


def test_infeasibility_beyond_counting_is_explained_by_the_cpsat_core() -> None:
    # Three people who must all be apart cannot fit in two crews.
    people = tuple(person(p, fac=True) for p in ["a", "b", "c", "d"])
    inp = SolverInput(
        people,
        Sizing(min_size=1, max_size=3, n_crews=2),
        not_with=(("a", "b"), ("b", "c"), ("a", "c")),
    )
    res = solve(inp, FAST)
    assert res.status is Status.INFEASIBLE
    text = " ".join(res.reasons)
    assert "A and B marked not-with" in text and "B and C marked not-with" in text


# ---- stability, determinism, rounds, repairs -----------------------------------------------


@SETTINGS
@given(camps(max_people=12))
def test_rerun_around_pins_moves_nobody_when_nothing_changed(inp: SolverInput) -> None:
    first = solve(inp, FAST)
    if not first.valid:
        return
    again = solve(replace(inp, previous=first.assignment), FAST)
    assert again.assignment == first.assignment
    assert again.moved == ()


def test_large_path_rerun_keeps_everyone_in_place() -> None:
    inp = generate(150, 2)
    opts = SolveOptions(time_budget=4.0, seed=1, deterministic=True)
    first = solve(inp, opts)
    again = solve(replace(inp, previous=first.assignment), opts)
    assert first.valid and again.moved == ()


@SETTINGS
@given(camps(max_people=12), st.integers(0, 3))
def test_same_seed_same_answer(inp: SolverInput, seed: int) -> None:
    opts = SolveOptions(time_budget=5.0, seed=seed, deterministic=True)
    assert solve(inp, opts).assignment == solve(inp, opts).assignment


def test_same_seed_same_answer_on_the_local_search_path() -> None:
    inp = generate(40, 5)
    opts = SolveOptions(time_budget=4.0, seed=9, exact_max_people=0, deterministic=True)
    a, b = solve(inp, opts), solve(inp, opts)
    assert a.valid and a.assignment == b.assignment


def test_next_round_avoids_previous_crewmates_except_requested_pairs() -> None:
    people = tuple(person(f"p{i}", fac=True, g="x" if i % 2 else "y") for i in range(12))
    base = SolverInput(people, Sizing(min_size=3, max_size=3, n_crews=4), together=(("p0", "p1"),))
    first = solve(base, FAST)
    past = round_pairs(first.assignment, base.together, weight=10)
    assert all({pp.a, pp.b} != {"p0", "p1"} for pp in past)
    second = solve(replace(base, past_pairs=past), FAST)
    assert second.status is Status.OPTIMAL
    assert second.breakdown is not None and second.breakdown.repeat == 0
    assert second.assignment["p0"] == second.assignment["p1"]


def _camp() -> SolverInput:
    people = tuple(person(f"p{i}", fac=i < 3, exp="new" if i % 2 else "old") for i in range(15))
    return SolverInput(
        people, Sizing(min_size=4, max_size=6, n_crews=3), attributes=(AttributeRule("exp"),)
    )


def test_repair_cancellation_with_slack_moves_nobody() -> None:
    inp = _camp()
    plan = solve(inp, FAST).assignment
    gone = "p10"  # not a facilitator, and every crew has one to spare above the minimum
    res = repair(inp, plan, removed=[gone], options=FAST)
    assert res.valid and res.moved == ()
    assert res.changed_crews == (plan[gone],)
    assert all(res.assignment[p] == c for p, c in plan.items() if p != gone)


def test_repair_cancellation_below_minimum_moves_exactly_one_person() -> None:
    inp = replace(_camp(), people=_camp().people[:14])  # sizes 5, 5, 4
    plan = solve(inp, FAST).assignment
    small = next(c for c in range(3) if list(plan.values()).count(c) == 4)
    gone = next(p for p, c in plan.items() if c == small and p not in ("p0", "p1", "p2"))
    res = repair(inp, plan, removed=[gone], options=FAST)
    assert res.valid and len(res.moved) == 1
    pb = compile_problem(replace(inp, people=tuple(p for p in inp.people if p.id != gone)))
    assert violations(pb, [res.assignment[pid] for pid in pb.ids]) == []


def test_repair_late_registration_joins_a_crew_with_room() -> None:
    inp = _camp()
    plan = solve(inp, FAST).assignment
    res = repair(inp, plan, added=[person("late", exp="new")], options=FAST)
    assert res.valid and res.moved == ()
    assert res.changed_crews == (res.assignment["late"],)


# ---- explanations and larger camps ---------------------------------------------------------


def test_unmet_request_between_languages_is_explained() -> None:
    people = tuple(person(f"e{i}", "en", fac=i == 0) for i in range(4)) + tuple(
        person(f"q{i}", "pt", fac=i == 0) for i in range(4)
    )
    inp = SolverInput(people, Sizing(min_size=4, max_size=4, n_crews=2), together=(("e1", "q1"),))
    res = solve(inp, FAST)
    assert [(u.a, u.b, u.reason) for u in res.unmet] == [
        ("e1", "q1", "they share no language (E1: en; Q1: pt)")
    ]
    assert res.breakdown is not None and res.breakdown.together == Weights().together


def test_unmet_request_blocked_by_size_or_tradeoff_is_explained() -> None:
    people = tuple(person(f"p{i}", fac=True, exp="new" if i < 2 else "old") for i in range(8))
    inp = SolverInput(
        people,
        Sizing(min_size=4, max_size=4, n_crews=2),
        together=(("p0", "p1"),),
        attributes=(AttributeRule("exp", weight=20),),
    )
    res = solve(inp, FAST)
    assert [u.reason for u in res.unmet] == ["traded off against balance"]


@pytest.mark.parametrize("n", [130, 400])
def test_local_search_path_is_valid_and_improves_on_greedy(n: int) -> None:
    inp = generate(n, 1)
    seen: list[int] = []
    res = solve(
        inp,
        SolveOptions(time_budget=4.0, seed=2, deterministic=True),
        progress=lambda _t, obj: seen.append(obj),
    )
    pb = compile_problem(inp)
    assert res.valid and violations(pb, [res.assignment[pid] for pid in pb.ids]) == []
    assert res.objective == seen[-1] < seen[0]
    assert res.worst_crew is not None
    assert res.crews[res.worst_crew].cost == max(c.cost for c in res.crews)


def test_attributes_in_cluster_mode_group_values() -> None:
    people = tuple(person(f"p{i}", fac=True, tz="a" if i < 4 else "b") for i in range(8))
    inp = SolverInput(
        people,
        Sizing(min_size=4, max_size=4, n_crews=2),
        attributes=(AttributeRule("tz", Mode.CLUSTER),),
    )
    res = solve(inp, FAST)
    assert res.status is Status.OPTIMAL and res.objective == 0
    assert len({res.assignment[f"p{i}"] for i in range(4)}) == 1

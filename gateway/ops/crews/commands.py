"""The organisers' crew operations, shared by the `gateway crews` command and the chat room.

The solver takes seconds of CPU, so it runs here, in a worker thread and outside any engine
transaction; its result enters the crews flow as a `proposal` COMMAND through `Engine.handle`,
like every other change. Each operation returns the text to show the organiser.

Changes after approval are found by comparing the approved crews with the current
registrations when the organiser asks (`update`), so registration needs to know nothing
about crews; the smallest fix (`repair`) is proposed and, once approved, only the crews it
touches are told.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from flows.config import GatheringConfig
from flows.crews.solver.solve import (
    Sizing,
    SolveOptions,
    SolveResult,
    SolverInput,
    load_people_csv,
    render_table,
    repair,
    solve,
)
from gateway.core.engine import Engine
from gateway.ops.commands import send_command
from gateway.ops.crews.inputs import (
    Registrant,
    build_input,
    load_names,
    load_registrants,
    load_stay_wishes,
    read_overrides,
    resolve,
)
from gateway.ops.crews.report import (
    describe_proposal,
    describe_roster,
    proposal_payload,
    roster_csv,
)
from gateway.store.db import Store

FLOW = "crews"
#: Called from the solver's thread with (seconds elapsed, best objective so far).
Progress = Callable[[float, int], None]


class CrewsError(Exception):
    """Something the organiser must fix first; the message says what."""


async def read_state(store: Store, slug: str) -> dict[str, Any]:
    async with store.read() as tx:
        row = await tx.one(
            "SELECT state FROM flow_runs WHERE gathering = ? AND flow = ? AND person_id = 0",
            (slug, FLOW),
        )
    return json.loads(row["state"]) if row else {}


async def command(
    engine: Engine, slug: str, name: str, payload: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Apply one COMMAND to the gathering's crews run; returns the flow's `last` record."""
    await send_command(engine, slug, FLOW, name, payload)
    last: dict[str, Any] = (await read_state(engine.store, slug)).get("last", {})
    return last


def _gathering(engine: Engine, slug: str) -> GatheringConfig:
    gathering = engine.gatherings.get(slug)
    if gathering is None:
        raise CrewsError(f"no gathering {slug!r}; known: {', '.join(engine.gatherings)}")
    if gathering.crews is None:
        raise CrewsError(f"{slug} has no [crews] section in its gathering file")
    if FLOW not in engine.flows:
        raise CrewsError("the crews flow is not enabled")
    return gathering


def _options(gathering: GatheringConfig, seconds: float | None, seed: int) -> SolveOptions:
    assert gathering.crews is not None
    return SolveOptions(time_budget=seconds or gathering.crews.solve_seconds, seed=seed)


async def _store(
    engine: Engine, slug: str, result: SolveResult, kind: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    if not result.valid:
        raise CrewsError("no valid crews:\n" + "\n".join(f"  - {r}" for r in result.reasons))
    last = await command(engine, slug, "proposal", proposal_payload(result, kind, **extra))
    if not last.get("ok"):
        raise CrewsError(str(last.get("detail", "the proposal was not stored")))
    return last


async def _show(engine: Engine, slug: str, people: Sequence[Registrant], footer: str) -> str:
    state = await read_state(engine.store, slug)
    approved = state.get("approved") or {}
    before = approved.get("assignment") if approved.get("announced") else None
    proposal = state["proposal"]
    names = await load_names(engine.store, proposal.get("removed", []))
    text = describe_proposal(
        engine.gatherings[slug], proposal, people, state.get("pins", {}), before, names
    )
    return f"{text}\n{footer}"


async def propose(
    engine: Engine,
    slug: str,
    *,
    overrides: Path | None = None,
    fresh: bool = False,
    seconds: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> str:
    """Solve for everyone registered (around pins) and store the proposal.

    Without `fresh`, the stored proposal is the starting point and moving anyone costs, so a
    re-run after a pin moves only the people it has to.
    """
    gathering = _gathering(engine, slug)
    state = await read_state(engine.store, slug)
    approved = state.get("approved") or {}
    if approved.get("announced"):
        return await update(
            engine, slug, overrides=overrides, seconds=seconds, seed=seed, progress=progress
        )
    people = await load_registrants(engine.store, slug)
    proposal = state.get("proposal") or {}
    current = proposal.get("assignment") or approved.get("assignment") or {}
    found = read_overrides(overrides, people, current, proposal.get("swaps", {}))
    pins = {**found.pins, **state.get("pins", {})}
    built = build_input(gathering, people, pins, previous=None if fresh else current or None)
    result = await _solve(built.input, _options(gathering, seconds, seed), progress)
    await _store(
        engine,
        slug,
        result,
        "initial",
        {"warnings": found.problems + built.warnings, "swaps": found.swaps},
    )
    return await _show(engine, slug, people, f"Approve with: gateway crews approve {slug}")


async def update(
    engine: Engine,
    slug: str,
    *,
    overrides: Path | None = None,
    seconds: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> str:
    """After approval: the smallest change that fits late registrations, cancellations and
    new pins into the approved crews (the crew count stays)."""
    gathering = _gathering(engine, slug)
    state = await read_state(engine.store, slug)
    approved = state.get("approved")
    if not approved:
        raise CrewsError("no crews approved yet: propose and approve first")
    assignment: dict[str, int] = approved["assignment"]
    people = await load_registrants(engine.store, slug)
    found = read_overrides(
        overrides, people, assignment, (state.get("proposal") or {}).get("swaps", {})
    )
    pins = {**found.pins, **state.get("pins", {})}
    here = {r.key for r in people}
    added = [r.key for r in people if r.key not in assignment]
    removed = sorted((k for k in assignment if k not in here), key=int)
    unmet_pins = {k: c for k, c in pins.items() if k in assignment and assignment[k] != c}
    if not added and not removed and not unmet_pins:
        return f"{gathering.name}: the approved crews match the registrations; nothing to change."
    built = build_input(gathering, people, pins)
    old = tuple(p for p in built.input.people if p.id in assignment)
    new = tuple(p for p in built.input.people if p.id not in assignment)
    options = _options(gathering, seconds, seed)
    result = await asyncio.to_thread(
        repair, replace(built.input, people=old), assignment, new, removed, options
    )
    await _store(
        engine,
        slug,
        result,
        "repair",
        {
            "added": added,
            "removed": removed,
            "swaps": found.swaps,
            "warnings": found.problems + built.warnings,
        },
    )
    return await _show(
        engine,
        slug,
        people,
        f"Approve with: gateway crews approve {slug} (only changed crews are told)",
    )


async def new_round(
    engine: Engine,
    slug: str,
    *,
    overrides: Path | None = None,
    seconds: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> str:
    """New crews that avoid the last round's pairs, except pairs who asked for each other."""
    gathering = _gathering(engine, slug)
    state = await read_state(engine.store, slug)
    approved = state.get("approved")
    if not approved:
        raise CrewsError("no crews approved yet: the first round is `propose`")
    people = await load_registrants(engine.store, slug)
    found = read_overrides(overrides, people, {}, {})
    pins = {**found.pins, **state.get("pins", {})}
    wishes = await load_stay_wishes(engine.store, gathering)
    built = build_input(
        gathering, people, pins, last_round=approved["assignment"], stay_with=wishes
    )
    result = await _solve(built.input, _options(gathering, seconds, seed), progress)
    await _store(engine, slug, result, "round", {"warnings": found.problems + built.warnings})
    return await _show(engine, slug, people, f"Approve with: gateway crews approve {slug}")


async def _solve(inp: SolverInput, options: SolveOptions, progress: Progress | None) -> SolveResult:
    return await asyncio.to_thread(solve, inp, options, progress)


async def approve(engine: Engine, slug: str) -> str:
    _gathering(engine, slug)
    last = await command(engine, slug, "approve")
    if not last.get("ok"):
        raise CrewsError(str(last.get("detail")))
    return str(last["detail"])


async def pin(engine: Engine, slug: str, person: str, crew: int, **solve_args: Any) -> str:
    """Pin someone to a crew (numbered from 1) and re-run around the pins."""
    _gathering(engine, slug)
    people = await load_registrants(engine.store, slug)
    who = _who(person, people)
    return await _pinned_then_proposed(engine, slug, {who.key: crew - 1}, solve_args)


async def unpin(engine: Engine, slug: str, person: str, **solve_args: Any) -> str:
    _gathering(engine, slug)
    who = _who(person, await load_registrants(engine.store, slug))
    last = await command(engine, slug, "unpin", {"person": who.key})
    if not last.get("ok"):
        raise CrewsError(str(last.get("detail")))
    return await propose(engine, slug, **solve_args)


async def swap(engine: Engine, slug: str, a: str, b: str, **solve_args: Any) -> str:
    """Pin two people to each other's crews (in the proposal, else the approved crews)."""
    _gathering(engine, slug)
    people = await load_registrants(engine.store, slug)
    first, second = _who(a, people), _who(b, people)
    state = await read_state(engine.store, slug)
    current = (
        (state.get("proposal") or {}).get("assignment")
        or (state.get("approved") or {}).get("assignment")
        or {}
    )
    if first.key not in current or second.key not in current:
        raise CrewsError("both people must be in the current proposal: propose first")
    wanted = {first.key: current[second.key], second.key: current[first.key]}
    return await _pinned_then_proposed(engine, slug, wanted, solve_args)


async def _pinned_then_proposed(
    engine: Engine, slug: str, wanted: Mapping[str, int], solve_args: Mapping[str, Any]
) -> str:
    """Pin people to crews (0-based) and propose around the pins. A pin the proposal
    cannot honour (a crew that does not exist, a rule it breaks) is taken back, so that
    later proposals do not fail on it too."""
    before = dict((await read_state(engine.store, slug)).get("pins", {}))
    try:
        for key, crew in wanted.items():
            last = await command(engine, slug, "pin", {"person": key, "crew": crew})
            if not last.get("ok"):
                raise CrewsError(str(last.get("detail")))
        return await propose(engine, slug, **solve_args)
    except CrewsError as exc:
        for key in wanted:
            if key in before:
                await command(engine, slug, "pin", {"person": key, "crew": before[key]})
            else:
                await command(engine, slug, "unpin", {"person": key})
        raise CrewsError(f"{exc}\n(the pin was not kept)") from None


def _who(ref: str, people: Sequence[Registrant]) -> Registrant:
    found = resolve(ref, people)
    if found is None:
        raise CrewsError(
            f"nobody registered is {ref!r} (use an email, Matrix id, person id "
            "or an unambiguous name)"
        )
    return found


async def show(engine: Engine, slug: str) -> str:
    _gathering(engine, slug)
    state = await read_state(engine.store, slug)
    if not state.get("proposal"):
        return await roster(engine, slug)
    return await _show(
        engine,
        slug,
        await load_registrants(engine.store, slug),
        "(stored proposal, not approved yet)",
    )


async def roster(engine: Engine, slug: str) -> str:
    gathering = _gathering(engine, slug)
    state = await read_state(engine.store, slug)
    return describe_roster(gathering, state, await load_registrants(engine.store, slug))


def parse_size(text: str) -> tuple[int, int]:
    """ "4-8" (or "6" for exactly six) as (min, max)."""
    low, _, high = text.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise CrewsError(f"size {text!r}: write it as MIN-MAX, e.g. 4-8") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise CrewsError(f"size {text!r}: need 1 <= MIN <= MAX")
    return bounds


def solve_csv(
    path: Path,
    *,
    size: str | None = None,
    crews: int | None = None,
    seconds: float = 10.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[str, str]:
    """Crews for a spreadsheet alone (columns: see `flows.crews.solver.csv_input`), no database:
    the report table and an `id,name,crew` CSV of the assignment.

    Without a size, the solver's default bounds (4-8) apply, unless a crew count is given:
    then sizes follow from it. A spreadsheet has no facilitator rule unless it has a
    `facilitator` column.
    """
    people = load_people_csv(path)
    if size is not None:
        low, high = parse_size(size)
        sizing = Sizing(min_size=low, max_size=high, n_crews=crews)
    elif crews is not None:
        sizing = Sizing(min_size=None, max_size=None, n_crews=crews)
    else:
        sizing = Sizing()
    facilitators = any(p.facilitator for p in people.people)
    inp = people.solver_input(sizing, require_facilitator=facilitators)
    result = solve(inp, SolveOptions(time_budget=seconds, seed=seed), progress)
    table = render_table(result, {p.id: p.name for p in people.people}, people.people)
    balanced = ", ".join(people.attribute_columns) or "none"
    table = f"balanced columns: {balanced}\n\n{table}"
    if not result.valid:
        raise CrewsError(table.rstrip())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "name", "crew"])
    writer.writerows([p.id, p.name, result.assignment[p.id] + 1] for p in people.people)
    return table, out.getvalue()


async def roster_csv_text(engine: Engine, slug: str) -> str:
    _gathering(engine, slug)
    state = await read_state(engine.store, slug)
    return roster_csv(state, await load_registrants(engine.store, slug))


USAGE = (
    "crews commands: propose [--fresh] | approve | pin PERSON CREW | unpin PERSON | "
    "move PERSON CREW | swap PERSON PERSON | update | round | roster | show"
)


async def handle_crews_command(
    engine: Engine, gathering: str, args: Sequence[str], *, overrides: Path | None = None
) -> str:
    """Run `!crews <args>` from the organisers' room; returns the reply text (never raises
    for the organiser's mistakes). `args` come after the gathering, e.g. ["pin", "ana@x", "2"]."""
    words = list(args)
    if len(words) == 1 and " " in words[0]:
        words = shlex.split(words[0])
    if not words:
        return USAGE
    name, rest = words[0].lower(), words[1:]
    solve_args: dict[str, Any] = {"overrides": overrides}
    try:
        if name == "propose" and set(rest) <= {"--fresh"}:
            return await propose(engine, gathering, fresh=bool(rest), **solve_args)
        if name == "approve" and not rest:
            return await approve(engine, gathering)
        if name in ("pin", "move") and len(rest) == 2 and rest[1].isdigit():
            return await pin(engine, gathering, rest[0], int(rest[1]), **solve_args)
        if name == "unpin" and len(rest) == 1:
            return await unpin(engine, gathering, rest[0], **solve_args)
        if name == "swap" and len(rest) == 2:
            return await swap(engine, gathering, rest[0], rest[1], **solve_args)
        if name == "update" and not rest:
            return await update(engine, gathering, **solve_args)
        if name == "round" and not rest:
            return await new_round(engine, gathering, **solve_args)
        if name == "roster" and not rest:
            return await roster(engine, gathering)
        if name == "show" and not rest:
            return await show(engine, gathering)
    except CrewsError as exc:
        return str(exc)
    return USAGE

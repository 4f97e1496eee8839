"""The organisers' crew operations, shared by the `gateway crews` command, the organisers'
Matrix room and mail (all through `gateway.ops.router`).

The solver takes seconds of CPU, so it never runs here: an operation reads the
registrations, builds the solver input and sends it to the crews flow as a `solve` COMMAND;
the flow asks the job runner to solve (`flows.crews.job`) and answers the organiser twice,
"solving…" at once and the proposal when it is ready. Other changes (approve) are COMMANDs
the flow answers itself; only reading (show, roster) is answered here.

Changes after approval are found by comparing the approved crews with the current
registrations when the organiser asks (`update`), so registration needs to know nothing
about crews; the smallest fix (`repair`) is proposed and, once approved, only the crews it
touches are told.
"""

from __future__ import annotations

import csv
import io
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.config import GatheringConfig
from flows.crews.describe import describe_proposal
from flows.crews.job import input_to_json, options_to_json
from flows.crews.solver.solve import (
    Sizing,
    SolveOptions,
    load_people_csv,
    render_table,
    solve,
)
from flows.crews.state import CrewsShared
from gateway.core.engine import Engine, Handled
from gateway.ops.crews.inputs import (
    Built,
    Registrant,
    build_input,
    load_names,
    load_registrants,
    load_stay_wishes,
    proposal_view,
    read_overrides,
    resolve,
)
from gateway.ops.crews.report import describe_roster, roster_csv
from gateway.store.db import Store

FLOW = "crews"
#: Called from the solver's thread with (seconds elapsed, best objective so far).
Progress = Callable[[float, int], None]
#: Sends a COMMAND (name, payload) to the gathering's crews run on the organiser's behalf:
#: the flow's replies go to the organiser (`Router.command`, bound to the request).
Send = Callable[[str, Mapping[str, Any]], Awaitable[Handled]]


class CrewsError(Exception):
    """Something the organiser must fix first; the message says what."""


@dataclass(frozen=True, slots=True)
class Said:
    """What an operation says back."""

    text: str
    #: The crews flow answered the organiser itself (a room or address got it through the
    #: outbox already); `text` is its answer for the terminal.
    answered: bool = False
    #: The flow did not do what was asked (the terminal exits non-zero).
    refused: bool = False


@dataclass(frozen=True, slots=True)
class SolveArgs:
    """How to solve: the organiser's options (`--fresh --seconds N --seed N --overrides P`)."""

    overrides: Path | None = None
    fresh: bool = False
    seconds: float | None = None
    seed: int = 0


async def read_state(store: Store, slug: str) -> CrewsShared:
    """The gathering's crews run, checked like the engine checks it (a row that does not fit
    fails here too, not deep in an operation)."""
    async with store.read() as tx:
        row = await tx.one(
            "SELECT state FROM flow_runs WHERE gathering = ? AND flow = ? AND person_id = 0",
            (slug, FLOW),
        )
    return CrewsShared.from_stored(row["state"]) if row else CrewsShared()


def check(engine: Engine, slug: str) -> GatheringConfig:
    """The gathering, if it has crews to work on."""
    gathering = engine.gatherings.get(slug)
    if gathering is None:
        raise CrewsError(f"no gathering {slug!r}; known: {', '.join(engine.gatherings)}")
    if gathering.crews is None:
        raise CrewsError(f"{slug} has no [crews] section in its gathering file")
    if FLOW not in engine.flows:
        raise CrewsError("the crews flow is not enabled")
    return gathering


def _options(gathering: GatheringConfig, args: SolveArgs) -> SolveOptions:
    assert gathering.crews is not None
    return SolveOptions(time_budget=args.seconds or gathering.crews.solve_seconds, seed=args.seed)


async def _flow(send: Send, name: str, payload: Mapping[str, Any]) -> Said:
    handled = await send(name, payload)
    if handled.duplicate:
        return Said("(already done)", answered=True)
    return Said("\n".join(handled.replies), answered=True, refused=handled.refused)


async def _ask_solve(
    engine: Engine,
    send: Send,
    gathering: GatheringConfig,
    kind: str,
    built: Built,
    args: SolveArgs,
    people: Sequence[Registrant],
    *,
    pins: Mapping[str, int | None],
    extra: Mapping[str, Any],
    approved: Mapping[str, int] | None = None,
    removed: Sequence[str] = (),
) -> Said:
    """The `solve` COMMAND: the flow keeps `pins`, and the job solves `built`."""
    others = await load_names(engine.store, removed) if removed else {}
    payload = {
        "kind": kind,
        "input": input_to_json(built.input),
        "options": options_to_json(_options(gathering, args)),
        "approved": dict(approved) if approved is not None else None,
        "removed": list(removed),
        "extra": dict(extra),
        "view": proposal_view(gathering, people, others),
        "pins": dict(pins),
    }
    return await _flow(send, "solve", payload)


def _pins(
    state: CrewsShared, found: Mapping[str, int], wanted: Mapping[str, int | None]
) -> dict[str, int]:
    """The pins to solve around: the overrides file's, the stored ones, then the request's
    (None: unpinned)."""
    pins = {**found, **state.pins}
    for key, crew in wanted.items():
        if crew is None:
            pins.pop(key, None)
        else:
            pins[key] = crew
    return pins


async def propose(
    engine: Engine,
    send: Send,
    slug: str,
    args: SolveArgs = SolveArgs(),
    wanted: Mapping[str, int | None] | None = None,
) -> Said:
    """Solve for everyone registered (around pins) and propose; `wanted` pins (or unpins,
    with None) people with this request.

    Without `fresh`, the stored proposal is the starting point and moving anyone costs, so a
    re-run after a pin moves only the people it has to.
    """
    gathering = check(engine, slug)
    wanted = wanted or {}
    state = await read_state(engine.store, slug)
    approved, proposal = state.approved, state.proposal
    if approved is not None and approved.announced:
        return await update(engine, send, slug, args, wanted)
    people = await load_registrants(engine.store, slug)
    current = _current(state)
    swaps = proposal.swaps if proposal else {}
    found = read_overrides(args.overrides, people, current, swaps)
    pins = _pins(state, found.pins, wanted)
    built = build_input(gathering, people, pins, previous=None if args.fresh else current or None)
    extra = {"warnings": found.problems + built.warnings, "swaps": found.swaps}
    return await _ask_solve(
        engine, send, gathering, "initial", built, args, people, pins=wanted, extra=extra
    )


async def update(
    engine: Engine,
    send: Send,
    slug: str,
    args: SolveArgs = SolveArgs(),
    wanted: Mapping[str, int | None] | None = None,
) -> Said:
    """After approval: the smallest change that fits late registrations, cancellations and
    new pins into the approved crews (the crew count stays)."""
    gathering = check(engine, slug)
    wanted = wanted or {}
    state = await read_state(engine.store, slug)
    if state.approved is None:
        raise CrewsError("no crews approved yet: propose and approve first")
    assignment = state.approved.assignment
    people = await load_registrants(engine.store, slug)
    swaps = state.proposal.swaps if state.proposal else {}
    found = read_overrides(args.overrides, people, assignment, swaps)
    pins = _pins(state, found.pins, wanted)
    here = {r.key for r in people}
    added = [r.key for r in people if r.key not in assignment]
    removed = sorted((k for k in assignment if k not in here), key=int)
    unmet_pins = {k: c for k, c in pins.items() if k in assignment and assignment[k] != c}
    if not added and not removed and not unmet_pins and not wanted:
        return Said(
            f"{gathering.name}: the approved crews match the registrations; nothing to change."
        )
    built = build_input(gathering, people, pins)
    extra = {
        "added": added,
        "removed": removed,
        "swaps": found.swaps,
        "warnings": found.problems + built.warnings,
    }
    return await _ask_solve(
        engine,
        send,
        gathering,
        "repair",
        built,
        args,
        people,
        pins=wanted,
        extra=extra,
        approved=assignment,
        removed=removed,
    )


async def new_round(engine: Engine, send: Send, slug: str, args: SolveArgs = SolveArgs()) -> Said:
    """New crews that avoid the last round's pairs, except pairs who asked for each other."""
    gathering = check(engine, slug)
    state = await read_state(engine.store, slug)
    approved = state.approved
    if approved is None:
        raise CrewsError("no crews approved yet: the first round is `propose`")
    people = await load_registrants(engine.store, slug)
    found = read_overrides(args.overrides, people, {}, {})
    pins = _pins(state, found.pins, {})
    wishes = await load_stay_wishes(engine.store, gathering)
    built = build_input(gathering, people, pins, last_round=approved.assignment, stay_with=wishes)
    extra = {"warnings": found.problems + built.warnings}
    return await _ask_solve(
        engine, send, gathering, "round", built, args, people, pins={}, extra=extra
    )


async def approve(engine: Engine, send: Send, slug: str) -> Said:
    check(engine, slug)
    return await _flow(send, "approve", {})


async def pin(
    engine: Engine, send: Send, slug: str, person: str, crew: int, args: SolveArgs = SolveArgs()
) -> Said:
    """Pin someone to a crew (numbered from 1) and propose around the pins; a pin the
    proposal cannot honour is taken back by the flow."""
    check(engine, slug)
    who = _who(person, await load_registrants(engine.store, slug))
    if crew < 1:
        raise CrewsError("a pin needs a crew number from 1")
    return await propose(engine, send, slug, args, {who.key: crew - 1})


async def unpin(
    engine: Engine, send: Send, slug: str, person: str, args: SolveArgs = SolveArgs()
) -> Said:
    check(engine, slug)
    who = _who(person, await load_registrants(engine.store, slug))
    if who.key not in (await read_state(engine.store, slug)).pins:
        raise CrewsError(f"{who.name} is not pinned")
    return await propose(engine, send, slug, args, {who.key: None})


async def swap(
    engine: Engine, send: Send, slug: str, a: str, b: str, args: SolveArgs = SolveArgs()
) -> Said:
    """Pin two people to each other's crews (in the proposal, else the approved crews)."""
    check(engine, slug)
    people = await load_registrants(engine.store, slug)
    first, second = _who(a, people), _who(b, people)
    current = _current(await read_state(engine.store, slug))
    if first.key not in current or second.key not in current:
        raise CrewsError("both people must be in the current proposal: propose first")
    wanted = {first.key: current[second.key], second.key: current[first.key]}
    return await propose(engine, send, slug, args, wanted)


def _current(state: CrewsShared) -> dict[str, int]:
    """The crews new pins and swaps refer to: the stored proposal's, else the approved ones."""
    if state.proposal is not None and state.proposal.assignment:
        return state.proposal.assignment
    return state.approved.assignment if state.approved is not None else {}


def _who(ref: str, people: Sequence[Registrant]) -> Registrant:
    found = resolve(ref, people)
    if found is None:
        raise CrewsError(
            f"nobody registered is {ref!r} (use an email, Matrix id, person id "
            "or an unambiguous name)"
        )
    return found


async def show(engine: Engine, slug: str) -> str:
    """The stored proposal (as the flow showed it), else the roster."""
    gathering = check(engine, slug)
    state = await read_state(engine.store, slug)
    proposal, approved = state.proposal, state.approved
    if proposal is None:
        return await roster(engine, slug)
    before = approved.assignment if approved is not None and approved.announced else None
    people = await load_registrants(engine.store, slug)
    others = await load_names(engine.store, proposal.removed)
    view = proposal_view(gathering, people, others)
    text = describe_proposal(gathering, proposal, view, state.pins, before)
    solving = " (a new proposal is being solved)" if state.solving else ""
    return f"{text}\n(stored proposal, not approved yet){solving}"


async def roster(engine: Engine, slug: str) -> str:
    gathering = check(engine, slug)
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
    check(engine, slug)
    state = await read_state(engine.store, slug)
    return roster_csv(state, await load_registrants(engine.store, slug))


USAGE = (
    "crews commands: propose [--fresh] | approve | pin PERSON CREW | unpin PERSON | "
    "move PERSON CREW | swap PERSON PERSON | update | round | roster [--csv] | show"
    " (solving takes --seconds N --seed N)"
)


def parse_options(
    words: Sequence[str], *, overrides: Path | None, terminal: bool
) -> tuple[list[str], SolveArgs, bool]:
    """The words that are not options, how to solve, and whether `--csv` was given. Only
    the terminal may name an overrides file (`--overrides PATH`): a path from chat or mail
    would let anyone who can write there read files on the server."""
    rest: list[str] = []
    fresh = as_csv = False
    seconds: float | None = None
    seed = 0
    items = iter(words)
    for word in items:
        if word == "--fresh":
            fresh = True
        elif word == "--csv":
            as_csv = True
        elif word in ("--seconds", "--seed", "--overrides"):
            value = next(items, None)
            if value is None:
                raise CrewsError(f"{word} needs a value\n{USAGE}")
            try:
                if word == "--seconds":
                    seconds = float(value)
                    if not 0 < seconds <= 600:
                        raise ValueError(value)
                elif word == "--seed":
                    seed = int(value)
                elif not terminal:
                    raise CrewsError(
                        "--overrides names a file on the server: only the terminal may; "
                        "the gathering's own overrides file applies here"
                    )
                else:
                    overrides = Path(value)
            except ValueError:
                raise CrewsError(f"{word} {value!r}: not a number (seconds: up to 600)") from None
        elif word.startswith("--"):
            raise CrewsError(f"unknown option {word}\n{USAGE}")
        else:
            rest.append(word)
    return rest, SolveArgs(overrides, fresh, seconds, seed), as_csv


async def handle_crews_command(
    engine: Engine,
    send: Send,
    gathering: str,
    args: Sequence[str],
    *,
    overrides: Path | None = None,
    terminal: bool = False,
) -> Said:
    """`crews GATHERING <args>` from the terminal, the organisers' room or mail. `args` come
    after the gathering, e.g. ["pin", "ana@x", "2", "--seconds", "5"]; `overrides` is the
    gathering's overrides file. Raises CrewsError for what the organiser must fix."""
    words = list(args)
    if len(words) == 1 and " " in words[0]:
        words = shlex.split(words[0])
    words, solving, as_csv = parse_options(words, overrides=overrides, terminal=terminal)
    if not words:
        raise CrewsError(USAGE)
    name, rest = words[0].lower(), words[1:]
    fresh_ok = name == "propose" or not solving.fresh
    if not fresh_ok or (as_csv and name != "roster"):
        raise CrewsError(USAGE)
    if name == "propose" and not rest:
        return await propose(engine, send, gathering, solving)
    if name == "approve" and not rest:
        return await approve(engine, send, gathering)
    if name in ("pin", "move") and len(rest) == 2 and rest[1].isdigit():
        return await pin(engine, send, gathering, rest[0], int(rest[1]), solving)
    if name == "unpin" and len(rest) == 1:
        return await unpin(engine, send, gathering, rest[0], solving)
    if name == "swap" and len(rest) == 2:
        return await swap(engine, send, gathering, rest[0], rest[1], solving)
    if name == "update" and not rest:
        return await update(engine, send, gathering, solving)
    if name == "round" and not rest:
        return await new_round(engine, send, gathering, solving)
    if name == "roster" and not rest:
        text = await (roster_csv_text if as_csv else roster)(engine, gathering)
        return Said(text)
    if name == "show" and not rest:
        return Said(await show(engine, gathering))
    raise CrewsError(USAGE)

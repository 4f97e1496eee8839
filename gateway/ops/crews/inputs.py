"""From registrations and the gathering file to the crew solver's input.

Who is placed: everyone whose registration run has status "registered". Their answers feed
the solver through the question ids named in `[crews]`; people are referenced (in together /
apart answers, the overrides file and commands) by email address, Matrix id, person id or
display name, so organisers can write what they know.

The overrides file (`<slug>.crews.toml` beside the gathering file) holds the organisers'
hand edits, all crew numbers counted from 1:

    [pins]                      # hard: the person is in this crew in every run
    "ana@example.org" = 2
    [[move]]                    # the same as a pin, written as an action
    person = "@bo:example.org"
    crew = 1
    [[swap]]                    # each takes the other's crew of the current proposal
    a = "Cy"
    b = "42"
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.config import CrewsConfig, GatheringConfig
from flows.crews.describe import ANY_LANGUAGE, attribute_value, truthy
from flows.crews.solver.solve import (
    AttributeRule,
    Mode,
    PastPair,
    Person,
    Sizing,
    SolverInput,
    Weights,
    round_pairs,
)
from flows.debrief.flow import Share, share_of
from gateway.model import PersonId
from gateway.store.db import Store

#: The solver attribute that holds a person's travel group (the travel term reads it).
TRAVEL_GROUP = "travel_group"
_SEPARATORS = re.compile(r"[,;\n]+")


@dataclass(frozen=True)
class Registrant:
    person: PersonId
    name: str
    answers: Mapping[str, Any]
    emails: tuple[str, ...] = ()
    matrix: tuple[str, ...] = ()
    #: The car or train group they travel to the gathering with (the travel flow's), if any:
    #: the solver's travel term keeps such people in one crew.
    travel_group: str = ""

    @property
    def key(self) -> str:
        """The id the solver and the flow state use: the person id as a string."""
        return str(self.person)


@dataclass
class Built:
    """A solver input plus what the organiser should hear about it."""

    input: SolverInput
    names: dict[str, str]
    warnings: list[str] = field(default_factory=list)


async def load_registrants(store: Store, slug: str) -> list[Registrant]:
    """Registered people of a gathering, with their answers and addresses."""
    async with store.read() as tx:
        rows = await tx.all(
            "SELECT r.person_id, r.state, p.display_name,"
            " (SELECT group_concat(i.kind || ' ' || i.address, char(10)) FROM identities i"
            "  WHERE i.person_id = p.id) AS addresses"
            " FROM flow_runs r JOIN people p ON p.id = r.person_id"
            " WHERE r.gathering = ? AND r.flow = 'registration' AND r.person_id != 0"
            " AND r.status = 'registered' AND p.erased_at IS NULL ORDER BY r.person_id",
            (slug,),
        )
    groups = await _travel_groups(store, slug)
    out = []
    for row in rows:
        pairs = [line.split(" ", 1) for line in (row["addresses"] or "").splitlines()]
        out.append(
            Registrant(
                person=PersonId(row["person_id"]),
                name=row["display_name"] or f"#{row['person_id']}",
                answers=json.loads(row["state"]).get("answers", {}),
                emails=tuple(a for k, a in pairs if k == "email"),
                matrix=tuple(a for k, a in pairs if k == "matrix"),
                travel_group=groups.get(str(row["person_id"]), ""),
            )
        )
    return out


async def _travel_groups(store: Store, slug: str) -> dict[str, str]:
    """Person key → travel group: a car its driver and riders agreed on (the way there), or
    a suggested train or bus group."""
    async with store.read() as tx:
        row = await tx.one(
            "SELECT state FROM flow_runs WHERE gathering = ? AND flow = 'travel' AND person_id = 0",
            (slug,),
        )
    state = json.loads(row["state"]) if row else {}
    groups: dict[str, str] = {}
    for match in state.get("matches", {}).values():
        if match["direction"] == "to" and match["status"] in ("introduced", "confirmed"):
            for person in (match["driver"], match["rider"]):
                groups[person] = f"car-{match['driver']}"
    for n, members in enumerate((state.get("plan") or {}).get("company", [])):
        for person in members:
            groups.setdefault(person, f"company-{n + 1}")
    return groups


async def load_names(store: Store, people: Iterable[str]) -> dict[str, str]:
    """Display names of people by key, registered or not (those who left a crew, too)."""
    keys = sorted({int(k) for k in people})
    async with store.read() as tx:
        rows = await tx.all(
            f"SELECT id, display_name FROM people WHERE id IN ({','.join('?' * len(keys))})",
            tuple(keys),
        )
    return {str(r["id"]): r["display_name"] or f"#{r['id']}" for r in rows}


def resolve(ref: str, people: Sequence[Registrant]) -> Registrant | None:
    """A registrant by person id, email, Matrix id or (unambiguous, case-blind) name."""
    ref = ref.strip()
    if not ref:
        return None
    wanted = ref.lower()
    for test in (
        lambda r: r.key == ref.lstrip("#"),
        lambda r: wanted in (e.lower() for e in r.emails),
        lambda r: ref in r.matrix,
    ):
        found = [r for r in people if test(r)]
        if found:
            return found[0]
    named = [r for r in people if r.name.strip().lower() == wanted]
    return named[0] if len(named) == 1 else None


def _refs(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [part.strip() for part in _SEPARATORS.split(value) if part.strip()]
    return []


def _languages(crews: CrewsConfig, answers: Mapping[str, Any]) -> frozenset[str]:
    if crews.language_question is None:
        return frozenset({ANY_LANGUAGE})
    given = _refs(answers.get(crews.language_question))
    # Someone who skipped the question would make every crew infeasible; they are treated
    # as speaking whatever the crew speaks, and the organiser is warned.
    return frozenset(given) or frozenset({ANY_LANGUAGE})


def requests(
    crews: CrewsConfig, question: str | None, people: Sequence[Registrant], warnings: list[str]
) -> list[tuple[str, str]]:
    """(asker, named) pairs from a together/apart answer; unknown names become warnings."""
    if question is None:
        return []
    pairs = []
    for r in people:
        for ref in _refs(r.answers.get(question)):
            other = resolve(ref, people)
            if other is None:
                warnings.append(f"{r.name} ({question}): nobody registered is {ref!r}")
            elif other.person != r.person:
                pairs.append((r.key, other.key))
    return pairs


async def load_stay_wishes(store: Store, gathering: GatheringConfig) -> dict[str, Any]:
    """Answers to the debrief's "who would you like to stay with?" question, by person key.

    Only from people who did not ask for anonymity: an anonymous answer is not theirs to
    act on."""
    debrief = gathering.debrief
    if debrief is None or debrief.stay_with_question is None:
        return {}
    async with store.read() as tx:
        rows = await tx.all(
            "SELECT person_id, state FROM flow_runs"
            " WHERE gathering = ? AND flow = 'debrief' AND person_id != 0",
            (gathering.slug,),
        )
    wishes = {}
    for row in rows:
        answers = json.loads(row["state"]).get("answers", {})
        if share_of(answers) != Share.EVERYONE and answers.get(debrief.stay_with_question):
            wishes[str(row["person_id"])] = answers[debrief.stay_with_question]
    return wishes


def proposal_view(
    gathering: GatheringConfig, people: Sequence[Registrant], others: Mapping[str, str]
) -> dict[str, Any]:
    """What `flows.crews.describe.describe_proposal` reads about people: names (`others`:
    of people no longer registered), the answers to the questions [crews] names, and the
    together/apart requests resolved to person keys."""
    crews = gathering.crews or CrewsConfig()
    asked = {crews.language_question, crews.facilitator_question}
    asked |= {c.question for c in crews.balance}
    questions = [q for q in asked if q]
    return {
        "names": {**others, **{r.key: r.name for r in people}},
        "answers": {r.key: {q: r.answers[q] for q in questions if q in r.answers} for r in people},
        "together": [list(p) for p in requests(crews, crews.together_question, people, [])],
        "apart": [list(p) for p in requests(crews, crews.apart_question, people, [])],
    }


def mutual(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs where both asked for each other (they may stay together across rounds)."""
    asked = set(pairs)
    return sorted({tuple(sorted(p)) for p in asked if (p[1], p[0]) in asked})  # type: ignore[misc]


def build_input(
    gathering: GatheringConfig,
    people: Sequence[Registrant],
    pins: Mapping[str, int],
    *,
    previous: Mapping[str, int] | None = None,
    last_round: Mapping[str, int] | None = None,
    stay_with: Mapping[str, Any] | None = None,
) -> Built:
    """The solver input for these people; `last_round` makes a new round avoid its pairs,
    except pairs who both asked for each other — at registration, or in the debrief's
    `stay_with` answers (person key → names)."""
    crews = gathering.crews or CrewsConfig()
    warnings: list[str] = []
    solver_people = tuple(
        Person(
            id=r.key,
            name=r.name,
            languages=_languages(crews, r.answers),
            facilitator=bool(crews.facilitator_question)
            and truthy(r.answers.get(crews.facilitator_question or "")),
            attributes={
                **{c.question: attribute_value(r.answers.get(c.question)) for c in crews.balance},
                **({TRAVEL_GROUP: r.travel_group} if r.travel_group else {}),
            },
        )
        for r in people
    )
    if crews.language_question:
        silent = [r.name for r in people if not _refs(r.answers.get(crews.language_question))]
        if silent:
            warnings.append("no language given (placed anywhere): " + ", ".join(silent))
    together = requests(crews, crews.together_question, people, warnings)
    for r in people:
        for ref in _refs((stay_with or {}).get(r.key)):
            other = resolve(ref, people)
            if other is None:
                warnings.append(f"{r.name} (debrief, stay with): nobody registered is {ref!r}")
            elif other.person != r.person and (r.key, other.key) not in together:
                together.append((r.key, other.key))
    apart = requests(crews, crews.apart_question, people, warnings)
    past: tuple[PastPair, ...] = ()
    if last_round:
        here = {r.key for r in people}
        kept = {p: c for p, c in last_round.items() if p in here}
        past = round_pairs(kept, mutual(together), weight=1)
    inp = SolverInput(
        people=solver_people,
        sizing=Sizing(
            min_size=crews.min_size,
            max_size=crews.max_size,
            target_size=crews.target_size,
            n_crews=crews.crews,
        ),
        together=tuple(together),
        not_with=tuple(apart),
        pins={p: c for p, c in pins.items() if p in {r.key for r in people}},
        require_facilitator=crews.one_facilitator_per_crew,
        attributes=tuple(
            AttributeRule(c.question, Mode(c.mode.value), max(round(c.weight), 0))
            for c in crews.balance
        ),
        past_pairs=past,
        travel_attribute=TRAVEL_GROUP if any(r.travel_group for r in people) else None,
        previous=previous,
        weights=Weights(
            together=round(crews.together_weight),
            repeat=round(crews.repeat_weight),
            travel=round(crews.travel_weight),
        ),
    )
    return Built(inp, {r.key: r.name for r in people}, warnings)


@dataclass
class Overrides:
    """Pins (0-based crews) from the overrides file, the swaps behind some of them, problems."""

    pins: dict[str, int] = field(default_factory=dict)
    #: "a|b" → the pins that swap produced. Stored with the proposal so that re-reading the
    #: file does not swap the two back: a swap is resolved against the crews it first saw.
    swaps: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_overrides(
    path: Path | None,
    people: Sequence[Registrant],
    current: Mapping[str, int],
    applied: Mapping[str, Mapping[str, int]],
) -> Overrides:
    """The overrides file, if it exists. `current` is the assignment new swaps refer to (the
    stored proposal or the approved crews); `applied` the swaps earlier proposals resolved."""
    out = Overrides()
    if path is None or not path.is_file():
        return out
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        out.problems.append(f"{path}: {exc}")
        return out
    unknown = set(data) - {"pins", "move", "swap"}
    if unknown:
        out.problems.append(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")

    def place(ref: object, crew: object, where: str) -> None:
        who = resolve(str(ref), people)
        if who is None:
            out.problems.append(f"{path}: {where}: nobody registered is {ref!r}")
        elif not isinstance(crew, int) or isinstance(crew, bool) or crew < 1:
            out.problems.append(f"{path}: {where}: crew must be a number from 1, got {crew!r}")
        else:
            out.pins[who.key] = crew - 1

    for ref, crew in dict(data.get("pins", {})).items():
        place(ref, crew, f"pins.{ref}")
    for i, move in enumerate(data.get("move", [])):
        place(move.get("person"), move.get("crew"), f"move[{i}]")
    for i, swap in enumerate(data.get("swap", [])):
        a, b = resolve(str(swap.get("a")), people), resolve(str(swap.get("b")), people)
        if a is None or b is None:
            out.problems.append(
                f"{path}: swap[{i}]: nobody registered is "
                f"{swap.get('a') if a is None else swap.get('b')!r}"
            )
            continue
        key = "|".join(sorted((a.key, b.key), key=int))
        if key in applied:
            pins = dict(applied[key])
        elif a.key in current and b.key in current:
            pins = {a.key: current[b.key], b.key: current[a.key]}
        else:
            out.problems.append(f"{path}: swap[{i}]: both people must be in the current proposal")
            continue
        out.swaps[key] = pins
        out.pins.update(pins)
    return out

"""Seeded camp generator shared by the benchmark and the tests."""

from __future__ import annotations

import random
from dataclasses import replace

from flows.crews.solver.model import AttributeRule, Mode, Person, Sizing, SolverInput


def generate(n: int, seed: int, target: int = 6) -> SolverInput:
    """A realistic camp: mostly English speakers, some Portuguese-only, some bilingual;
    ~10% in together pairs, ~10% in apart pairs, about one facilitator per crew plus a few."""
    rng = random.Random(seed * 7919 + n)
    crews = max(1, round(n / target))
    people = []
    for i in range(n):
        r = rng.random()
        # The first four are bilingual so a Portuguese crew can always be filled.
        langs = {"en", "pt"} if i < 4 or r > 0.9 else {"pt"} if r > 0.82 else {"en"}
        people.append(
            Person(
                id=f"p{i}",
                name=f"Person {i}",
                languages=frozenset(langs),
                facilitator=False,
                attributes={
                    "experience": rng.choice(["new", "new", "returning", "veteran"]),
                    "gender": rng.choice(["f", "m", "f", "m", "x"]),
                    "region": rng.choice(["north", "south", "east", "west", "abroad"]),
                    "timezone": rng.choice(["utc-3", "utc", "utc+1", "utc+2"]),
                    "travel_group": f"t{rng.randrange(n // 3)}" if rng.random() < 0.3 else "",
                },
            )
        )
    # Facilitators: bilinguals first so minority-language crews can be staffed, then English.
    order = sorted(range(n), key=lambda i: (len(people[i].languages) < 2, rng.random()))
    portuguese = [i for i in order if "pt" in people[i].languages]
    chosen = set(portuguese[: max(1, crews // 5)]) | set(order[: crews + max(2, crews // 10)])
    people = [
        Person(p.id, p.name, p.languages, i in chosen, p.attributes) for i, p in enumerate(people)
    ]
    ids = [p.id for p in people]
    shuffled = ids[:]
    rng.shuffle(shuffled)
    pairs = n // 20
    together = tuple((shuffled[2 * i], shuffled[2 * i + 1]) for i in range(pairs))
    apart = tuple(
        (shuffled[2 * pairs + 2 * i], shuffled[2 * pairs + 2 * i + 1]) for i in range(pairs)
    )
    rules = (
        AttributeRule("experience", Mode.SPREAD, 2),
        AttributeRule("gender", Mode.SPREAD, 1),
        AttributeRule("region", Mode.SPREAD, 1),
        AttributeRule("timezone", Mode.CLUSTER, 1),
    )
    return SolverInput(
        people=tuple(people),
        sizing=Sizing(min_size=4, max_size=8, target_size=target),
        together=together,
        not_with=apart,
        attributes=rules,
    )


def pin_facilitators(inp: SolverInput, k: int, shuffle: int) -> SolverInput:
    """One facilitator pinned to each of the `k` crews, in a shuffled order, so that crews
    whose pinned facilitator speaks Portuguese are scattered among the others."""
    rng = random.Random(shuffle)
    crews = list(range(k))
    rng.shuffle(crews)
    facilitators = [p.id for p in inp.people if p.facilitator]
    rng.shuffle(facilitators)
    return replace(inp, pins={pid: crews[i] for i, pid in enumerate(facilitators[:k])})

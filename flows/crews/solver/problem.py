"""Index form of a crew problem and THE objective definition.

Every engine (CP-SAT, local search, repair) works on `Problem` and is checked
against `evaluate`, so there is exactly one definition of what "better" means.
All costs are integers so that CP-SAT optimises the same number.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from flows.crews.solver.model import Breakdown, InvalidInput, Mode, SolverInput


@dataclass(frozen=True)
class AttrTerm:
    name: str
    mode: Mode
    weight: int
    values: tuple[str, ...]
    value_of: tuple[int, ...]  # per person, -1 when the person has no value
    baseline: int  # spread: fewest same-value pairs any assignment could have
    # The crew-size term: everyone shares one value, so its pairs count crew sizes.
    is_size: bool = False


@dataclass(frozen=True)
class Problem:
    n: int
    k: int
    min_size: int
    max_size: int
    ids: tuple[str, ...]
    names: tuple[str, ...]
    index: dict[str, int]
    languages: tuple[str, ...]
    lang_mask: tuple[int, ...]  # bit l set when the person speaks languages[l]
    facilitator: tuple[bool, ...]
    require_facilitator: bool
    pinned: tuple[int, ...]  # crew index or -1
    not_with: tuple[tuple[int, ...], ...]  # adjacency
    together: tuple[tuple[int, int, int], ...]  # (i, j, weight), i < j
    together_adj: tuple[tuple[tuple[int, int], ...], ...]
    wishes: tuple[tuple[int, int, bool], ...]  # (asker, asked for, mutual), one per pair
    repeat: tuple[tuple[int, int, int], ...]
    repeat_adj: tuple[tuple[tuple[int, int], ...], ...]
    attrs: tuple[AttrTerm, ...]
    travel_of: tuple[int, ...]  # travel group index or -1 (groups of one are ignored)
    travel_groups: tuple[tuple[int, ...], ...]
    travel_weight: int
    travel_baseline: int
    previous: tuple[int, ...]  # previous crew index or -1
    move_weight: int


def crew_count(
    n: int, min_size: int | None, max_size: int | None, target: int | None, n_crews: int | None
) -> tuple[int, int, int]:
    """Resolve (crews, min, max). Out-of-range combinations are left for the diagnosis."""
    if n_crews is not None:
        k = max(1, n_crews)
        lo = min_size if min_size is not None else n // k
        hi = max_size if max_size is not None else -(-n // k)
        return k, lo, hi
    lo = min_size if min_size is not None else 1
    hi = max_size if max_size is not None else max(lo, n)
    goal = target if target is not None else (lo + hi) / 2
    k = max(1, round(n / goal))
    fewest, most = -(-n // hi), n // lo if lo > 0 else n
    if fewest <= most:
        k = min(max(k, fewest), most)
    return k, lo, hi


def _pairs(
    raw: dict[tuple[int, int], int], n: int
) -> tuple[tuple[tuple[int, int, int], ...], tuple[tuple[tuple[int, int], ...], ...]]:
    pairs = tuple((i, j, w) for (i, j), w in sorted(raw.items()) if w > 0)
    adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i, j, w in pairs:
        adj[i].append((j, w))
        adj[j].append((i, w))
    return pairs, tuple(tuple(a) for a in adj)


def even_split_pairs(total: int, k: int) -> int:
    """Fewest same-value pairs when `total` people are spread over `k` crews."""
    q, r = divmod(total, k)
    return r * (q + 1) * q // 2 + (k - r) * q * (q - 1) // 2


def compile_problem(inp: SolverInput) -> Problem:
    people = inp.people
    n = len(people)
    index: dict[str, int] = {}
    for i, p in enumerate(people):
        if p.id in index:
            raise InvalidInput(f"person id {p.id!r} appears twice")
        index[p.id] = i

    def idx(pid: str, where: str) -> int:
        if pid not in index:
            raise InvalidInput(f"unknown person id {pid!r} in {where}")
        return index[pid]

    s = inp.sizing
    k, lo, hi = crew_count(n, s.min_size, s.max_size, s.target_size, s.n_crews)
    languages = tuple(sorted({lang for p in people for lang in p.languages}))
    lpos = {lang: b for b, lang in enumerate(languages)}
    masks = tuple(sum(1 << lpos[lang] for lang in p.languages) for p in people)

    pinned = [-1] * n
    for pid, c in inp.pins.items():
        pinned[idx(pid, "pins")] = c
    nw: list[set[int]] = [set() for _ in range(n)]
    for a, b in inp.not_with:
        i, j = idx(a, "not_with"), idx(b, "not_with")
        if i != j:
            nw[i].add(j)
            nw[j].add(i)

    tog: dict[tuple[int, int], int] = defaultdict(int)
    for group in inp.together:
        members = sorted({idx(pid, "together") for pid in group})
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                tog[(i, j)] = inp.weights.together  # asked twice still counts once
    rep: dict[tuple[int, int], int] = defaultdict(int)
    for pp in inp.past_pairs:
        i, j = sorted((idx(pp.a, "past_pairs"), idx(pp.b, "past_pairs")))
        if i != j:
            rep[(i, j)] += inp.weights.repeat * pp.weight
    together, together_adj = _pairs(tog, n)
    wishes = _wishes(inp, index)
    repeat, repeat_adj = _pairs(rep, n)

    attrs = tuple(_attr_term(inp, rule.name, rule.mode, rule.weight, k) for rule in inp.attributes)
    if inp.weights.size > 0 and n > 0:
        attrs += (
            AttrTerm(
                "",
                Mode.SPREAD,
                inp.weights.size,
                ("",),
                (0,) * n,
                even_split_pairs(n, k),
                is_size=True,
            ),
        )
    travel_of, groups = _travel(inp, n)
    travel_baseline = sum(-(-len(g) // max(hi, 1)) for g in groups)
    previous = [-1] * n
    for pid, c in (inp.previous or {}).items():
        if pid in index and 0 <= c < k:  # people who left, or crews that no longer exist
            previous[index[pid]] = c
    return Problem(
        n=n,
        k=k,
        min_size=lo,
        max_size=hi,
        ids=tuple(p.id for p in people),
        names=tuple(p.name for p in people),
        index=index,
        languages=languages,
        lang_mask=masks,
        facilitator=tuple(p.facilitator for p in people),
        require_facilitator=inp.require_facilitator,
        pinned=tuple(pinned),
        not_with=tuple(tuple(sorted(x)) for x in nw),
        together=together,
        together_adj=together_adj,
        wishes=wishes,
        repeat=repeat,
        repeat_adj=repeat_adj,
        attrs=attrs,
        travel_of=travel_of,
        travel_groups=groups,
        travel_weight=inp.weights.travel,
        travel_baseline=travel_baseline,
        previous=tuple(previous),
        move_weight=inp.weights.move,
    )


def _wishes(inp: SolverInput, index: dict[str, int]) -> tuple[tuple[int, int, bool], ...]:
    """Each requested pair once, oriented from the person who asked (the first of a group),
    flagged mutual when both asked for each other."""
    asked: dict[tuple[int, int], bool] = {}
    for group in inp.together:
        members = [index[pid] for pid in dict.fromkeys(group)]
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if (j, i) in asked:
                    asked[j, i] = True
                else:
                    asked.setdefault((i, j), False)
    return tuple((i, j, mutual) for (i, j), mutual in asked.items())


def _attr_term(inp: SolverInput, name: str, mode: Mode, weight: int, k: int) -> AttrTerm:
    raw = [p.attributes.get(name, "").strip() for p in inp.people]
    values = tuple(sorted({v for v in raw if v}))
    pos = {v: i for i, v in enumerate(values)}
    value_of = tuple(pos[v] if v else -1 for v in raw)
    totals = [0] * len(values)
    for v in value_of:
        if v >= 0:
            totals[v] += 1
    baseline = sum(even_split_pairs(t, k) for t in totals) if mode is Mode.SPREAD else 0
    return AttrTerm(name, mode, weight, values, value_of, baseline)


def _travel(inp: SolverInput, n: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    if inp.travel_attribute is None:
        return (-1,) * n, ()
    by_value: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(inp.people):
        v = p.attributes.get(inp.travel_attribute, "").strip()
        if v:
            by_value[v].append(i)
    groups = tuple(tuple(m) for _, m in sorted(by_value.items()) if len(m) > 1)
    travel_of = [-1] * n
    for g, members in enumerate(groups):
        for i in members:
            travel_of[i] = g
    return tuple(travel_of), groups


def crew_members(pb: Problem, crew_of: Sequence[int]) -> list[list[int]]:
    members: list[list[int]] = [[] for _ in range(pb.k)]
    for p, c in enumerate(crew_of):
        members[c].append(p)
    return members


def evaluate(pb: Problem, crew_of: Sequence[int]) -> Breakdown:
    """The objective. Lower is better; every term is 0 at its ideal."""
    together = sum(w for i, j, w in pb.together if crew_of[i] != crew_of[j])
    repeat = sum(w for i, j, w in pb.repeat if crew_of[i] == crew_of[j])
    balance = size = 0
    for a in pb.attrs:
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for p, v in enumerate(a.value_of):
            if v >= 0:
                counts[(crew_of[p], v)] += 1
        if a.mode is Mode.SPREAD:
            pairs = sum(c * (c - 1) // 2 for c in counts.values())
            if a.is_size:
                size += a.weight * (pairs - a.baseline)
            else:
                balance += a.weight * (pairs - a.baseline)
        else:
            distinct = [0] * pb.k
            for c, _ in counts:
                distinct[c] += 1
            balance += a.weight * sum(max(d - 1, 0) for d in distinct)
    spans = sum(len({crew_of[p] for p in g}) for g in pb.travel_groups)
    travel = pb.travel_weight * (spans - pb.travel_baseline)
    moves = pb.move_weight * sum(1 for p, c in enumerate(pb.previous) if c >= 0 and crew_of[p] != c)
    return Breakdown(
        together=together, balance=balance, repeat=repeat, travel=travel, moves=moves, size=size
    )


def crew_costs(pb: Problem, crew_of: Sequence[int]) -> list[int]:
    """Each crew's share of the objective, to name the worst crew.

    A split request or travel group is charged to every crew it touches; spread
    balance is charged above the crew's even share of the camp-wide baseline.
    """
    cost = [0] * pb.k
    for i, j, w in pb.together:
        if crew_of[i] != crew_of[j]:
            cost[crew_of[i]] += w
            cost[crew_of[j]] += w
    for i, j, w in pb.repeat:
        if crew_of[i] == crew_of[j]:
            cost[crew_of[i]] += w
    for a in pb.attrs:
        for c, members in enumerate(crew_members(pb, crew_of)):
            counts: dict[int, int] = defaultdict(int)
            for p in members:
                if a.value_of[p] >= 0:
                    counts[a.value_of[p]] += 1
            if a.mode is Mode.SPREAD:
                pairs = sum(x * (x - 1) // 2 for x in counts.values())
                cost[c] += a.weight * pairs - a.weight * a.baseline // pb.k
            else:
                cost[c] += a.weight * max(len(counts) - 1, 0)
    for g in pb.travel_groups:
        crews = {crew_of[p] for p in g}
        if len(crews) > math.ceil(len(g) / max(pb.max_size, 1)):
            for c in crews:
                cost[c] += pb.travel_weight
    for p, c in enumerate(pb.previous):
        if c >= 0 and crew_of[p] != c:
            cost[crew_of[p]] += pb.move_weight
    return cost


def common_languages(pb: Problem, members: Sequence[int]) -> int:
    mask = (1 << len(pb.languages)) - 1
    for p in members:
        mask &= pb.lang_mask[p]
    return mask


def violations(pb: Problem, crew_of: Sequence[int]) -> list[str]:
    """Hard-constraint violations (empty list = valid). Used by tests and as a final guard."""
    out: list[str] = []
    if len(crew_of) != pb.n or any(not 0 <= c < pb.k for c in crew_of):
        return ["assignment has the wrong length or an out-of-range crew"]
    for c, members in enumerate(crew_members(pb, crew_of)):
        if not pb.min_size <= len(members) <= pb.max_size:
            out.append(f"crew {c + 1} has {len(members)} people")
        if members and common_languages(pb, members) == 0:
            out.append(f"crew {c + 1} has no shared language")
        if pb.require_facilitator and not any(pb.facilitator[p] for p in members):
            out.append(f"crew {c + 1} has no facilitator")
    for p, q in ((a, b) for a in range(pb.n) for b in pb.not_with[a] if a < b):
        if crew_of[p] == crew_of[q]:
            out.append(f"{pb.ids[p]} and {pb.ids[q]} are together but marked not-with")
    for p, c in enumerate(pb.pinned):
        if c >= 0 and crew_of[p] != c:
            out.append(f"{pb.ids[p]} is not in pinned crew {c + 1}")
    return out

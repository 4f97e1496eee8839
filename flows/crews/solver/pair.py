"""Exact re-solve of two crews: every split of their members is scored at once.

Two crews of up to 8 hold at most 16 people, so all splits of them (2^16 at most) fit in
one array (larger crews are left to CP-SAT). Scoring them with a few array operations
takes a fraction of a millisecond (two crews of 6: about 0.25 ms), where a CP-SAT call
on the same two crews costs tens of milliseconds, nearly all of it fixed overhead. The
score is the part of `evaluate` that depends on the split; everything else is the same
for every split, so score differences are exact objective differences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from flows.crews.solver.model import Mode
from flows.crews.solver.problem import Problem, common_languages

Ints = NDArray[np.int64]
# Small integers, exact in floats; float matrix products are far faster than integer ones.
Floats = NDArray[np.float32] | NDArray[np.float64]
MAX_PEOPLE = 16  # 65,536 splits; above this the arrays stop being cheap


@dataclass(frozen=True)
class Split:
    delta: int  # objective change (<= 0) of moving to `crew_of`
    people: list[int]
    crew_of: list[int]  # new crew of each of `people`


class PairSolver:
    def __init__(self, pb: Problem) -> None:
        self.pb = pb
        nl = len(pb.languages)
        # Per-person feature columns: languages, facilitator, then one column per value of
        # each attribute. A split's per-crew counts are then one matrix product.
        self.fac_col = nl
        spans: list[tuple[int, int, int, bool]] = []  # (first col, end col, weight, spread)
        col = nl + 1
        for a in pb.attrs:
            spans.append((col, col + len(a.values), a.weight, a.mode is Mode.SPREAD))
            col += len(a.values)
        feat = np.zeros((pb.n, col), dtype=np.float32)
        for p in range(pb.n):
            for b in range(nl):
                feat[p, b] = pb.lang_mask[p] >> b & 1
            feat[p, nl] = int(pb.facilitator[p])
            for (first, _, _, _), a in zip(spans, pb.attrs, strict=True):
                if a.value_of[p] >= 0:
                    feat[p, first + a.value_of[p]] = 1
        self.feat = feat
        self.half_spread_w = np.zeros(col)
        for first, end, w, spread in spans:
            if spread:
                self.half_spread_w[first:end] = w / 2
        self.cluster = [(first, end, w) for first, end, w, spread in spans if not spread]
        self._splits: dict[tuple[int, bool], tuple[Ints, Floats, Floats]] = {}

    def _candidates(self, m: int, symmetric: bool) -> tuple[Ints, Floats, Floats]:
        """Split codes (bit i set: person i in the first crew) with both sizes in bounds, in
        increasing order, with their rows of bits and first-crew sizes. When the two crews
        are interchangeable only codes with person 0 in the first crew are kept."""
        if (m, symmetric) not in self._splits:
            codes = np.arange(1 << m, dtype=np.int64)
            size = ((codes[:, None] >> np.arange(m)) & 1).sum(axis=1)
            lo, hi = self.pb.min_size, self.pb.max_size
            ok = (size >= lo) & (size <= hi) & (m - size >= lo) & (m - size <= hi)
            if symmetric:
                ok &= (codes & 1) == 1
            codes = codes[ok]
            # float32 holds these small counts exactly and halves the memory traffic.
            x = ((codes[:, None] >> np.arange(m)) & 1).astype(np.float32)
            self._splits[m, symmetric] = codes, x, size[ok].astype(np.float32)
        return self._splits[m, symmetric]

    def best_split(
        self,
        crew_of: Sequence[int],
        in_a: Sequence[int],
        in_b: Sequence[int],
        a: int,
        b: int,
        sideways: random.Random | None = None,
    ) -> Split | None:
        """Best valid split of crews a and b; None when it is no better than the current one
        (with `sideways`, a random different split of equal cost when there is one)."""
        pb = self.pb
        people = list(in_a) + list(in_b)
        m = len(people)
        if not 2 <= m <= MAX_PEOPLE:
            return None
        must_a = must_b = 0
        symmetric = True
        for i, p in enumerate(people):
            if pb.pinned[p] >= 0:
                symmetric = False
                if pb.pinned[p] == a:
                    must_a |= 1 << i
                else:
                    must_b |= 1 << i
            elif pb.previous[p] in (a, b):
                symmetric = False
        codes, x, size = self._candidates(m, symmetric)
        if must_a or must_b:
            keep = ((codes & must_a) == must_a) & ((codes & must_b) == 0)
            codes, x, size = codes[keep], x[keep], size[keep]
        full = (1 << m) - 1
        current = (1 << len(in_a)) - 1
        if symmetric and not current & 1:
            current ^= full  # the same split, labelled as the kept codes are
        now = int(np.searchsorted(codes, current))
        cost, valid = self._score(x, size, people, a, b)
        cost[~valid] = np.inf
        best = int(np.argmin(cost))
        if not (np.isfinite(cost[best]) and np.isfinite(cost[now])):
            # No split of these two crews keeps every rule (or the current one is not among
            # the candidates): nothing to improve here, and inf - inf has no delta.
            return None
        delta = round(cost[best] - cost[now])
        if delta == 0:
            if sideways is None:
                return None
            # An equally good different split, at random: drifting across plateaus lets
            # later pairs find gains again. (The current split with the two crews' labels
            # swapped is the same split.)
            ties = np.flatnonzero(cost == cost[now])
            ties = ties[(codes[ties] != current) & (codes[ties] != current ^ full)]
            if not len(ties):
                return None
            best = int(ties[sideways.randrange(len(ties))])
        chosen = int(codes[best])
        return Split(delta, people, [a if chosen >> i & 1 else b for i in range(m)])

    def _score(
        self, x: Floats, size_a: Floats, people: list[int], a: int, b: int
    ) -> tuple[Floats, NDArray[np.bool_]]:
        pb = self.pb
        m = len(people)
        feat = self.feat[people]
        total = feat.sum(axis=0)
        in_a = x @ feat
        in_b = total - in_a
        size_b = m - size_a
        valid = np.ones(len(x), dtype=np.bool_)
        # Column-by-column loops below: reductions along short rows cost more than a few
        # passes over columns.
        if not common_languages(pb, people):  # else every split shares that language
            speak_a = speak_b = np.zeros(len(x), dtype=np.bool_)
            for lang in range(len(pb.languages)):
                if total[lang]:
                    speak_a = speak_a | (in_a[:, lang] == size_a)
                    speak_b = speak_b | (in_b[:, lang] == size_b)
            valid &= speak_a & speak_b
        if pb.require_facilitator:
            valid &= (in_a[:, self.fac_col] > 0) & (in_b[:, self.fac_col] > 0)
        # Same-value pairs c(c-1)/2 summed over both crews: the linear part adds up to the
        # same column totals for every split, so only the squares tell splits apart.
        cost = (in_a * in_a + in_b * in_b) @ self.half_spread_w
        for first, end, w in self.cluster:
            present = [col for col in range(first, end) if total[col]]
            if len(present) > 1:  # else both crews hold at most that one value
                used_a = sum((in_a[:, col] > 0).astype(np.int64) for col in present)
                used_b = sum((in_b[:, col] > 0).astype(np.int64) for col in present)
                cost += w * (np.maximum(used_a - 1, 0) + np.maximum(used_b - 1, 0))
        where = {p: i for i, p in enumerate(people)}
        groups: dict[int, list[int]] = {}
        for i, p in enumerate(people):
            col = x[:, i]
            for q, w in pb.together_adj[p]:
                j = where.get(q, -1)
                if j > i:
                    cost += w * (col != x[:, j])
            for q, w in pb.repeat_adj[p]:
                j = where.get(q, -1)
                if j > i:
                    cost += w * (col == x[:, j])
            for q in pb.not_with[p]:
                j = where.get(q, -1)
                if j > i:
                    valid &= col != x[:, j]
            if pb.previous[p] == a:
                cost += pb.move_weight * (1 - col)
            elif pb.previous[p] == b:
                cost += pb.move_weight * col
            if pb.travel_of[p] >= 0:
                groups.setdefault(pb.travel_of[p], []).append(i)
        for members in groups.values():
            if len(members) > 1:  # a lone member always spans exactly one of the two crews
                here = x[:, members].sum(axis=1)
                cost += pb.travel_weight * ((here > 0).astype(np.float64) + (here < len(members)))
        return cost, valid

"""Exact re-solve of two crews: every split of their members is scored at once.

Two crews of a large camp hold at most 2 * max_size people, so all splits of them
(2^16 at most) fit in one integer array. Scoring them with a few array operations
takes about a millisecond, where a CP-SAT call on the same two crews costs tens of
milliseconds, nearly all of it fixed overhead. The score is the part of `evaluate`
that depends on the split; everything else is the same for every split, so score
differences are exact objective differences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from flows.solvers.crews_model import Mode
from flows.solvers.crews_problem import Problem

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]  # small integers, exact; float matrix products are much faster
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
        feat = np.zeros((pb.n, col))
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
        self._splits: dict[int, Ints] = {}

    def _size_ok(self, m: int) -> Ints:
        """Split codes (bit i set: person i in the first crew) with both sizes in bounds."""
        if m not in self._splits:
            codes = np.arange(1 << m, dtype=np.int64)
            size = ((codes[:, None] >> np.arange(m)) & 1).sum(axis=1)
            lo, hi = self.pb.min_size, self.pb.max_size
            ok = (size >= lo) & (size <= hi) & (m - size >= lo) & (m - size <= hi)
            self._splits[m] = codes[ok]
        return self._splits[m]

    def best_split(self, crew_of: Sequence[int], in_a: Sequence[int], in_b: Sequence[int],
                   a: int, b: int, sideways: random.Random | None = None) -> Split | None:
        """Best valid split of crews a and b; None when it is no better than the current one
        (with `sideways`, a random different split of equal cost when there is one)."""
        pb = self.pb
        people = list(in_a) + list(in_b)
        m = len(people)
        if m > MAX_PEOPLE:
            return None
        current = (1 << len(in_a)) - 1
        codes = self._size_ok(m)
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
        if must_a or must_b:
            codes = codes[((codes & must_a) == must_a) & ((codes & must_b) == 0)]
        elif symmetric:
            # Swapping the two crews' labels changes nothing: keep person 0 in the first.
            codes = codes[(codes & 1) == 1]
        codes = np.append(codes, current)
        x = ((codes[:, None] >> np.arange(m)) & 1).astype(np.float64)
        cost, valid = self._score(x, people, a, b)
        cost[~valid] = np.inf
        best = int(np.argmin(cost))
        delta = round(cost[best] - cost[-1])
        if delta == 0:
            if sideways is None:
                return None
            # An equally good different split, at random: drifting across plateaus lets
            # later pairs find gains again. (The current split with the two crews' labels
            # swapped is the same split.)
            ties = np.flatnonzero(cost[:-1] == cost[-1])
            ties = ties[(codes[ties] != current) & (codes[ties] != current ^ ((1 << m) - 1))]
            if not len(ties):
                return None
            best = int(ties[sideways.randrange(len(ties))])
        chosen = x[best]
        return Split(delta, people, [a if chosen[i] else b for i in range(m)])

    def _score(self, x: Floats, people: list[int], a: int, b: int
               ) -> tuple[Floats, NDArray[np.bool_]]:
        pb = self.pb
        m = len(people)
        feat = self.feat[people]
        in_a = x @ feat
        in_b = feat.sum(axis=0) - in_a
        size_a = x.sum(axis=1)
        size_b = m - size_a
        nl = len(pb.languages)
        valid = ((in_a[:, :nl] == size_a[:, None]).any(axis=1)
                 & (in_b[:, :nl] == size_b[:, None]).any(axis=1))
        if pb.require_facilitator:
            valid &= (in_a[:, self.fac_col] > 0) & (in_b[:, self.fac_col] > 0)
        # Same-value pairs c(c-1)/2 summed over both crews: the linear part adds up to the
        # same column totals for every split, so only the squares tell splits apart.
        cost = (in_a * in_a + in_b * in_b) @ self.half_spread_w
        for first, end, w in self.cluster:
            used_a = (in_a[:, first:end] > 0).sum(axis=1)
            used_b = (in_b[:, first:end] > 0).sum(axis=1)
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

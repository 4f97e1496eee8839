"""Local search with incremental cost deltas (the first assignment comes from `build`).

`State` keeps per-crew counters (sizes, languages, facilitators, attribute values,
travel groups) so a relocate or swap is evaluated in time proportional to the
person's own requests and attributes, never by re-evaluating the whole camp.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from flows.crews.solver.model import Mode
from flows.crews.solver.problem import Problem, evaluate

Progress = Callable[[float, int], None]


class State:
    def __init__(self, pb: Problem, crew_of: Sequence[int]) -> None:
        self.pb = pb
        k, nl = pb.k, len(pb.languages)
        self.full_mask = (1 << nl) - 1
        self.crew_of = list(crew_of)
        self.members: list[list[int]] = [[] for _ in range(k)]
        self.pos = [0] * pb.n
        self.size = [0] * k
        self.lang_cnt = [[0] * nl for _ in range(k)]
        self.common = [self.full_mask] * k
        self.fac_cnt = [0] * k
        self.attr_cnt = [[[0] * len(a.values) for _ in range(k)] for a in pb.attrs]
        self.distinct = [[0] * k for _ in pb.attrs]
        self.travel_cnt = [[0] * k for _ in pb.travel_groups]
        # Per person: (attribute index, value, weight, is_spread), only where a value exists.
        self.pattr = [
            tuple(
                (ai, a.value_of[p], a.weight, a.mode is Mode.SPREAD)
                for ai, a in enumerate(pb.attrs)
                if a.value_of[p] >= 0
            )
            for p in range(pb.n)
        ]
        self.tog_w = {(i, j): w for i, j, w in pb.together}
        self.rep_w = {(i, j): w for i, j, w in pb.repeat}
        for p, c in enumerate(self.crew_of):
            self._add(p, c)
        for c in range(k):
            self._refresh_common(c)
        self.cost = evaluate(pb, self.crew_of).total

    def _add(self, p: int, c: int) -> None:
        self.crew_of[p] = c
        self.pos[p] = len(self.members[c])
        self.members[c].append(p)
        self.size[c] += 1
        self._count(p, c, 1)

    def _remove(self, p: int, c: int) -> None:
        lst = self.members[c]
        last = lst.pop()
        if last != p:
            lst[self.pos[p]] = last
            self.pos[last] = self.pos[p]
        self.size[c] -= 1
        self._count(p, c, -1)

    def _count(self, p: int, c: int, d: int) -> None:
        pb = self.pb
        mask, lc = pb.lang_mask[p], self.lang_cnt[c]
        for b in range(len(lc)):
            if mask >> b & 1:
                lc[b] += d
        if pb.facilitator[p]:
            self.fac_cnt[c] += d
        for ai, v, _, _ in self.pattr[p]:
            cnt = self.attr_cnt[ai][c]
            cnt[v] += d
            if (d > 0 and cnt[v] == 1) or (d < 0 and cnt[v] == 0):
                self.distinct[ai][c] += d
        g = pb.travel_of[p]
        if g >= 0:
            self.travel_cnt[g][c] += d

    def _refresh_common(self, c: int) -> None:
        s, m = self.size[c], 0
        for b, cnt in enumerate(self.lang_cnt[c]):
            if cnt == s:
                m |= 1 << b
        self.common[c] = m

    def _common_swapped(self, c: int, out: int, inn: int) -> int:
        """Shared languages of crew c after `out` leaves and `inn` joins."""
        fast = self.common[c] & self.pb.lang_mask[inn]
        if fast:
            return fast
        s, m, om = self.size[c] - 1, 0, self.pb.lang_mask[out]
        for b, cnt in enumerate(self.lang_cnt[c]):
            if cnt - (om >> b & 1) == s:
                m |= 1 << b
        return m & self.pb.lang_mask[inn]

    # ---- feasibility of moves -------------------------------------------------
    def can_move(self, p: int, b: int) -> bool:
        pb, a = self.pb, self.crew_of[p]
        if a == b or pb.pinned[p] >= 0:
            return False
        if self.size[a] <= pb.min_size or self.size[b] >= pb.max_size:
            return False
        if not self.common[b] & pb.lang_mask[p]:
            return False
        if pb.require_facilitator and pb.facilitator[p] and self.fac_cnt[a] == 1:
            return False
        co = self.crew_of
        return not any(co[r] == b for r in pb.not_with[p])

    def can_swap(self, p: int, q: int) -> bool:
        pb, co = self.pb, self.crew_of
        a, b = co[p], co[q]
        if a == b or pb.pinned[p] >= 0 or pb.pinned[q] >= 0:
            return False
        if pb.require_facilitator and pb.facilitator[p] != pb.facilitator[q]:
            if (pb.facilitator[p] and self.fac_cnt[a] == 1) or (
                pb.facilitator[q] and self.fac_cnt[b] == 1
            ):
                return False
        if not self._common_swapped(b, q, p) or not self._common_swapped(a, p, q):
            return False
        if any(co[r] == b and r != q for r in pb.not_with[p]):
            return False
        return not any(co[r] == a and r != p for r in pb.not_with[q])

    # ---- incremental deltas ---------------------------------------------------
    def _pair_delta(self, p: int, a: int, b: int, skip: int) -> int:
        co, d = self.crew_of, 0
        for q, w in self.pb.together_adj[p]:
            if q != skip:
                cq = co[q]
                d += w if cq == a else -w if cq == b else 0
        for q, w in self.pb.repeat_adj[p]:
            if q != skip:
                cq = co[q]
                d += -w if cq == a else w if cq == b else 0
        return d

    def _solo_delta(self, p: int, a: int, b: int, same_group: bool = False) -> int:
        """Travel and move terms of p moving a -> b (travel is unchanged in a same-group swap)."""
        pb, d = self.pb, 0
        g = pb.travel_of[p]
        if g >= 0 and not same_group:
            tc = self.travel_cnt[g]
            d += pb.travel_weight * ((tc[b] == 0) - (tc[a] == 1))
        pv = pb.previous[p]
        if pv >= 0:
            d += pb.move_weight * ((pv == a) - (pv == b))
        return d

    def move_delta(self, p: int, b: int) -> int:
        a = self.crew_of[p]
        d = self._pair_delta(p, a, b, -1) + self._solo_delta(p, a, b)
        for ai, v, w, spread in self.pattr[p]:
            cnt = self.attr_cnt[ai]
            if spread:
                d += w * (cnt[b][v] - cnt[a][v] + 1)
            else:
                dist = self.distinct[ai]
                if cnt[a][v] == 1 and dist[a] >= 2:
                    d -= w
                if cnt[b][v] == 0 and dist[b] >= 1:
                    d += w
        return d

    def swap_delta(self, p: int, q: int) -> int:
        pb, a, b = self.pb, self.crew_of[p], self.crew_of[q]
        d = self._pair_delta(p, a, b, q) + self._pair_delta(q, b, a, p)
        same = pb.travel_of[p] >= 0 and pb.travel_of[p] == pb.travel_of[q]
        d += self._solo_delta(p, a, b, same) + self._solo_delta(q, b, a, same)
        for ai, a_t in enumerate(pb.attrs):
            vp, vq = a_t.value_of[p], a_t.value_of[q]
            if vp == vq:
                continue
            cnt, w = self.attr_cnt[ai], a_t.weight
            if a_t.mode is Mode.SPREAD:
                if vp >= 0:
                    d += w * (cnt[b][vp] - cnt[a][vp] + 1)
                if vq >= 0:
                    d += w * (cnt[a][vq] - cnt[b][vq] + 1)
            else:
                d += w * (self._cluster_change(ai, a, vp, vq) + self._cluster_change(ai, b, vq, vp))
        return d

    def _cluster_change(self, ai: int, c: int, out_v: int, in_v: int) -> int:
        cnt, old = self.attr_cnt[ai][c], self.distinct[ai][c]
        new = old - (out_v >= 0 and cnt[out_v] == 1) + (in_v >= 0 and cnt[in_v] == 0)
        return max(new - 1, 0) - max(old - 1, 0)

    def apply_move(self, p: int, b: int, delta: int) -> None:
        a = self.crew_of[p]
        self._remove(p, a)
        self._add(p, b)
        self._refresh_common(a)
        self._refresh_common(b)
        self.cost += delta

    def apply_swap(self, p: int, q: int, delta: int) -> None:
        a, b = self.crew_of[p], self.crew_of[q]
        self._remove(p, a)
        self._remove(q, b)
        self._add(p, b)
        self._add(q, a)
        self._refresh_common(a)
        self._refresh_common(b)
        self.cost += delta


def local_search(
    state: State,
    rng: random.Random,
    deadline: float,
    max_iters: int,
    stall: int,
    progress: Progress | None = None,
    t0: float = 0.0,
) -> list[int]:
    """Late-acceptance hill climbing over relocate and swap moves; returns the best assignment.

    Late acceptance needs a single parameter (history length) and escapes local
    optima without a temperature schedule that would depend on the cost scale.
    """
    pb = state.pb
    movable = [p for p in range(pb.n) if pb.pinned[p] < 0]
    if not movable or pb.k < 2:
        return list(state.crew_of)
    history = [state.cost] * max(50, min(2000, pb.n * 2))
    best, best_cost, last_gain = list(state.crew_of), state.cost, 0
    for it in range(max_iters):
        if it - last_gain > stall:
            break
        if it % 512 == 0 and time.monotonic() > deadline:
            break
        p = movable[rng.randrange(len(movable))]
        partners = pb.together_adj[p]
        if partners and rng.random() < 0.3:
            b = state.crew_of[partners[rng.randrange(len(partners))][0]]
        else:
            b = rng.randrange(pb.k)
        if b == state.crew_of[p]:
            continue
        if rng.random() < 0.5 and state.can_move(p, b):
            delta, q = state.move_delta(p, b), -1
        else:
            q = state.members[b][rng.randrange(state.size[b])]
            if not state.can_swap(p, q):
                continue
            delta = state.swap_delta(p, q)
        new = state.cost + delta
        slot = it % len(history)
        if delta <= 0 or new <= history[slot]:
            if q < 0:
                state.apply_move(p, b, delta)
            else:
                state.apply_swap(p, q, delta)
            if state.cost < best_cost:
                best, best_cost, last_gain = list(state.crew_of), state.cost, it
                if progress is not None:
                    progress(time.monotonic() - t0, best_cost)
        history[slot] = state.cost
    return best

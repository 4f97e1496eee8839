"""A first valid assignment, built the same way every time.

Crew languages first (pinned crews keep a language their pinned members speak, and take on
the languages single-language speakers need when those members allow it), then one
facilitator per crew by bipartite matching, then everyone else, most constrained first,
into the emptiest crew that fits. When someone fits nowhere, a member of a full crew that
would take them moves to a crew with room (an ejection); crews left below the minimum
are topped up from crews above it. No randomness: whether a first answer exists never
depends on luck, and the search that follows starts from the same place for a given camp.
"""

from __future__ import annotations

from collections.abc import Sequence

from flows.crews.solver.problem import Problem


def choose_languages(pb: Problem) -> list[int] | None:
    """Each crew's language (None when the people pinned to a crew share none).

    Languages of single-language speakers claim the crews they need first, on crews whose
    pinned members speak them (most constrained crews first); the remaining crews follow
    how many people prefer each language (D'Hondt), capped by the crews its speakers and
    facilitators can staff."""
    nl, k = len(pb.languages), pb.k
    full = (1 << nl) - 1
    allowed = [full] * k
    for p, c in enumerate(pb.pinned):
        if 0 <= c < k:
            allowed[c] &= pb.lang_mask[p]
    if any(a == 0 for a in allowed):
        return None
    speakers = [sum(m >> b & 1 for m in pb.lang_mask) for b in range(nl)]
    fac_speakers = [
        sum(m >> b & 1 for p, m in enumerate(pb.lang_mask) if pb.facilitator[p]) for b in range(nl)
    ]
    demand, only = [0] * nl, [0] * nl
    for m in pb.lang_mask:
        if m:
            home = max((b for b in range(nl) if m >> b & 1), key=lambda b: (speakers[b], -b))
            demand[home] += 1
            if m & (m - 1) == 0:
                only[home] += 1
    crew_lang = [-1] * k
    count = [0] * nl

    def cap(b: int) -> int:
        staff = fac_speakers[b] if pb.require_facilitator else k
        return min(staff, speakers[b] // max(pb.min_size, 1))

    def assign(c: int, b: int) -> None:
        crew_lang[c] = b
        count[b] += 1

    for c in range(k):
        if allowed[c] & (allowed[c] - 1) == 0:  # one language possible
            assign(c, allowed[c].bit_length() - 1)
    langs = sorted(range(nl), key=lambda b: (sum(a >> b & 1 for a in allowed), -only[b], b))
    pinned_to: list[list[int]] = [[] for _ in range(k)]
    for p, c in enumerate(pb.pinned):
        if 0 <= c < k:
            pinned_to[c].append(p)
    for b in langs:
        # Add crews of language b until they seat its single-language speakers, counting the
        # seats pinned people and facilitators take.
        alone = [p for p in range(pb.n) if pb.lang_mask[p] == 1 << b and pb.pinned[p] < 0]
        own_facilitators = sum(pb.facilitator[p] for p in alone)
        seats, open_facilitator_seats = 0, 0
        for c in range(k):
            if crew_lang[c] == b:
                free, needs = _free_seats(pb, c, pinned_to)
                seats, open_facilitator_seats = seats + free, open_facilitator_seats + needs
        hosts = sorted(
            (c for c in range(k) if crew_lang[c] < 0 and allowed[c] >> b & 1),
            key=lambda c: (allowed[c].bit_count(), allowed[c] == full, len(pinned_to[c]), c),
        )
        for c in hosts:
            if seats + min(own_facilitators, open_facilitator_seats) >= len(alone):
                break
            assign(c, b)
            free, needs = _free_seats(pb, c, pinned_to)
            seats, open_facilitator_seats = seats + free, open_facilitator_seats + needs
    for c in range(k):
        if crew_lang[c] >= 0:
            continue
        fits = [b for b in range(nl) if allowed[c] >> b & 1]
        pool = [b for b in fits if count[b] < cap(b)] or fits
        assign(c, max(pool, key=lambda b: (demand[b] / (count[b] + 1), -b)))
    return crew_lang


def _free_seats(pb: Problem, c: int, pinned_to: Sequence[list[int]]) -> tuple[int, bool]:
    """Seats of crew c left for b-only speakers not pinned anywhere, and whether one of
    them goes to a facilitator still to come (who may or may not speak only b)."""
    pinned = pinned_to[c]
    needs_facilitator = pb.require_facilitator and not any(pb.facilitator[p] for p in pinned)
    return pb.max_size - len(pinned) - needs_facilitator, needs_facilitator


class _Builder:
    def __init__(self, pb: Problem, crew_lang: Sequence[int]) -> None:
        self.pb, self.crew_lang = pb, crew_lang
        self.crew_of = [-1] * pb.n
        self.members: list[list[int]] = [[] for _ in range(pb.k)]

    def speaks(self, p: int, c: int) -> bool:
        return bool(self.pb.lang_mask[p] >> self.crew_lang[c] & 1)

    def fits(self, p: int, c: int, room: bool = True) -> bool:
        pb = self.pb
        return (
            (not room or len(self.members[c]) < pb.max_size)
            and self.speaks(p, c)
            and not any(self.crew_of[r] == c for r in pb.not_with[p])
        )

    def place(self, p: int, c: int) -> None:
        self.crew_of[p] = c
        self.members[c].append(p)

    def take(self, p: int) -> None:
        self.members[self.crew_of[p]].remove(p)
        self.crew_of[p] = -1

    def movable(self, q: int) -> bool:
        """q may leave its crew without breaking a pin or the crew's facilitator."""
        pb, c = self.pb, self.crew_of[q]
        if pb.pinned[q] >= 0:
            return False
        if pb.require_facilitator and pb.facilitator[q]:
            return sum(pb.facilitator[r] for r in self.members[c]) > 1
        return True

    def facilitators(self) -> bool:
        """One facilitator for every crew without one: a maximum bipartite matching (Kuhn),
        so a facilitator who could lead only one crew is never used up elsewhere."""
        pb = self.pb
        needy = [c for c in range(pb.k) if not any(pb.facilitator[p] for p in self.members[c])]
        free = [p for p in range(pb.n) if pb.facilitator[p] and self.crew_of[p] < 0]
        free.sort(key=lambda p: (pb.lang_mask[p].bit_count(), p))
        options = {c: [p for p in free if self.fits(p, c)] for c in needy}
        led_by: dict[int, int] = {}  # facilitator -> crew

        def augment(c: int, seen: set[int]) -> bool:
            for p in options[c]:
                if p not in seen:
                    seen.add(p)
                    if p not in led_by or augment(led_by[p], seen):
                        led_by[p] = c
                        return True
            return False

        if not all(augment(c, set()) for c in needy):
            return False
        for p, c in sorted(led_by.items()):
            self.place(p, c)
        return True

    def place_rest(self) -> bool:
        pb = self.pb
        rest = [p for p in range(pb.n) if self.crew_of[p] < 0]
        choices = {p: sum(self.speaks(p, c) for c in range(pb.k)) for p in rest}
        rest.sort(key=lambda p: (choices[p], len(pb.not_with[p]) == 0, p))
        for p in rest:
            cands = [c for c in range(pb.k) if self.fits(p, c)]
            if cands:
                friends = {self.crew_of[q] for q, _ in pb.together_adj[p]}
                self.place(
                    p,
                    min(
                        cands,
                        key=lambda c: (
                            len(self.members[c]) >= pb.min_size,
                            len(self.members[c]),
                            c not in friends,
                            c,
                        ),
                    ),
                )
            elif not self.eject_for(p):
                return False
        return True

    def eject_for(self, p: int) -> bool:
        """Make room for p in a full crew that would take them, by moving one of its members
        to a crew with room."""
        pb = self.pb
        for c in range(pb.k):
            if not self.fits(p, c, room=False):
                continue
            for q in sorted(self.members[c]):
                if not self.movable(q):
                    continue
                for d in range(pb.k):
                    if d != c and self.fits(q, d):
                        self.take(q)
                        self.place(q, d)
                        self.place(p, c)
                        return True
        return False

    def top_up(self) -> bool:
        """Fill crews below the minimum from crews above it."""
        pb = self.pb
        for c in range(pb.k):
            while len(self.members[c]) < pb.min_size:
                donor = next(
                    (
                        q
                        for d in sorted(range(pb.k), key=lambda d: (-len(self.members[d]), d))
                        if d != c and len(self.members[d]) > pb.min_size
                        for q in sorted(self.members[d])
                        if self.movable(q) and self.fits(q, c)
                    ),
                    -1,
                )
                if donor < 0:
                    return False
                self.take(donor)
                self.place(donor, c)
        return True


def construct(pb: Problem) -> list[int] | None:
    """A valid assignment, or None when this construction cannot find one (the caller then
    asks CP-SAT, which can also prove that none exists)."""
    crew_lang = choose_languages(pb)
    if crew_lang is None:
        return None
    b = _Builder(pb, crew_lang)
    for p, c in enumerate(pb.pinned):
        if 0 <= c < pb.k:
            b.place(p, c)
    if pb.require_facilitator and not b.facilitators():
        return None
    if not b.place_rest() or not b.top_up():
        return None
    return b.crew_of

"""Ride matching: riders placed in cars whose whole plan can be driven. Pure and deterministic.

The model. Times are whole minutes from any epoch the caller chooses. Travel times come from
the great-circle distance × ROAD_FACTOR at AVERAGE_KMH (no network, no road data; the
function is one place to swap for a routing table). On the way there a car leaves its
driver's home at its departure time, picks its riders up in one order — each within the
rider's window (waiting for a rider who is not ready yet is allowed, and counts as detour)
— and drives to the venue; the departure lies in the driver's window. On the way back
everyone leaves the venue together at a time inside every window and the car drops its
riders off on the way home.
A car's detour is the time its trip takes beyond the driver's direct trip (driving and
waiting); it must not exceed the
driver's limit (by default the smaller of 45 minutes and a third of the direct trip).

Matching places as many riders as it can, then keeps the total detour low. Pairing riders
with drivers one by one is not enough — two riders each fine alone may not fit one car's
single order and departure — so every insertion is checked against the whole car:

1. cheap filters first (as OpenTripPlanner's and Mobicoop's carpooling do): a rider is a
   candidate for a driver only if the detour for them alone is within the limit and their
   windows can meet;
2. riders with the fewest candidate drivers go first, each into the car where they add the
   least detour (trying every pickup position);
3. repair: an unplaced rider may take the seat of a placed one who fits in another car;
4. improvement: a rider moves to another car when that shortens the total detour.

A re-plan (a driver cancels or changes, a rider declines) keeps every car that still works,
drops only what no longer fits, and places the people affected without moving anyone else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import permutations

import numpy as np
from numpy.typing import NDArray

ROAD_FACTOR = 1.3
AVERAGE_KMH = 70.0
DEFAULT_DETOUR_CAP = 45
EARTH_KM = 6371.0
#: How many candidate drivers each rider keeps (the nearest by detour).
CANDIDATES_KEPT = 40
#: How many seat searches the repair may make in one plan: a bound on time that does not
#: depend on the machine, so the same input always gives the same plan.
REPAIR_BUDGET = 60_000
#: In a repair, the nearest drivers of a rider whose passengers may give way.
REPAIR_WIDTH = 8
#: Orders tried exhaustively up to this many riders; above it, best insertion.
EXACT_ORDER_UP_TO = 4


@dataclass(frozen=True, slots=True)
class Place:
    lat: float
    lon: float


def km_between(a: Place, b: Place) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def minutes_between(a: Place, b: Place) -> int:
    return round(km_between(a, b) * ROAD_FACTOR / AVERAGE_KMH * 60)


def _minutes_matrix(rows: Sequence[Place], columns: Sequence[Place]) -> NDArray[np.int64]:
    """`minutes_between` for every pair at once (equal to it up to rounding of a half)."""
    la1 = np.radians([p.lat for p in rows])[:, None]
    lo1 = np.radians([p.lon for p in rows])[:, None]
    la2 = np.radians([p.lat for p in columns])[None, :]
    lo2 = np.radians([p.lon for p in columns])[None, :]
    h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
    km = 2 * EARTH_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    minutes: NDArray[np.int64] = np.rint(km * ROAD_FACTOR / AVERAGE_KMH * 60).astype(np.int64)
    return minutes


class Direction(StrEnum):
    TO = "to"  # from home to the venue
    BACK = "back"  # from the venue home


class Reason(StrEnum):
    NO_DRIVER_NEAR = "no driver near"
    WINDOW_MISMATCH = "window mismatch"
    SEATS_FULL = "seats full"


@dataclass(frozen=True, slots=True)
class Driver:
    id: str
    origin: Place
    seats: int
    #: Way there: when they can leave home; way back: when they can leave the venue.
    earliest: int
    latest: int
    #: Minutes out of their way they accept; None: the default (see `detour_limit`).
    max_detour: int | None = None


@dataclass(frozen=True, slots=True)
class Rider:
    id: str
    origin: Place
    #: Way there: when they can be picked up at home; way back: when they can leave.
    earliest: int
    latest: int


@dataclass(frozen=True, slots=True)
class Car:
    driver: str
    #: In pickup (way there) or drop-off (way back) order.
    riders: tuple[str, ...]
    departure: int
    #: When each rider is picked up (way there) or dropped off (way back), in order.
    stops: tuple[int, ...]
    detour: int


@dataclass(frozen=True, slots=True)
class Plan:
    direction: Direction
    cars: tuple[Car, ...]
    unmatched: Mapping[str, Reason] = field(default_factory=dict)

    @property
    def matched(self) -> int:
        return sum(len(c.riders) for c in self.cars)

    @property
    def detour(self) -> int:
        return sum(c.detour for c in self.cars)

    def car_of(self, rider: str) -> Car | None:
        return next((c for c in self.cars if rider in c.riders), None)


@dataclass
class Trip:
    """One direction's people and venue, with travel times computed once."""

    venue: Place
    drivers: Mapping[str, Driver]
    riders: Mapping[str, Rider]
    direction: Direction = Direction.TO
    #: (driver, rider) pairs that must not share a car (a declined proposal).
    forbidden: frozenset[tuple[str, str]] = frozenset()
    _times: dict[tuple[str, str], int] = field(default_factory=dict)

    def place(self, who: str) -> Place:
        if who == "":
            return self.venue
        person = self.drivers.get(who) or self.riders[who]
        return person.origin

    def minutes(self, a: str, b: str) -> int:
        """Travel time between two people's homes ("" is the venue)."""
        key = (a, b) if a <= b else (b, a)
        if key not in self._times:
            self._times[key] = minutes_between(self.place(a), self.place(b))
        return self._times[key]

    def detour_limit(self, driver: Driver) -> int:
        direct = self.minutes(driver.id, "")
        default = min(DEFAULT_DETOUR_CAP, direct // 3)
        return default if driver.max_detour is None else min(driver.max_detour, default)

    # -- one car ---------------------------------------------------------------------

    def schedule(self, driver: Driver, order: Sequence[str]) -> Car | None:
        """The car driving `order`, or None when no departure time fits it."""
        if not order:
            return Car(driver.id, (), driver.earliest, (), 0)
        if len(order) > driver.seats:
            return None
        if self.forbidden and any((driver.id, r) in self.forbidden for r in order):
            return None
        if self.direction == Direction.TO:
            return self._schedule_to(driver, order)
        return self._schedule_back(driver, order)

    def _route(self, driver: Driver, order: Sequence[str]) -> tuple[list[int], int]:
        """Minutes from the start to each stop, and the detour, of this order."""
        stops = (
            [driver.id, *order, ""] if self.direction == Direction.TO else ["", *order, driver.id]
        )
        offsets, total = [], 0
        for a, b in zip(stops, stops[1:], strict=False):
            total += self.minutes(a, b)
            offsets.append(total)
        return offsets[:-1], total - self.minutes(driver.id, "")

    def _schedule_to(self, driver: Driver, order: Sequence[str]) -> Car | None:
        offsets, route_detour = self._route(driver, order)
        limit = self.detour_limit(driver)
        if route_detour > limit:
            return None
        riders = [self.riders[r] for r in order]

        def stops(departure: int) -> list[int] | None:
            """Pickup times leaving at `departure`, waiting for riders not ready yet."""
            time, previous, out = departure, 0, []
            for rider, offset in zip(riders, offsets, strict=True):
                time = max(time + offset - previous, rider.earliest)
                previous = offset
                if time > rider.latest:
                    return None
                out.append(time)
            return out

        # Leaving as early as allowed is the most likely to fit; leaving as late as fits
        # means the least waiting, so the latest departure that still fits is taken.
        if stops(driver.earliest) is None:
            return None
        no_wait = max(r.earliest - o for r, o in zip(riders, offsets, strict=True))
        low, high = driver.earliest, max(driver.earliest, min(driver.latest, no_wait))
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if stops(middle) is not None else (low, middle - 1)
        found = stops(low)
        assert found is not None
        # Time spent waiting for a rider is time out of the driver's way too.
        arrival = found[-1] + self.minutes(order[-1], "")
        detour = arrival - low - self.minutes(driver.id, "")
        if detour > limit:
            return None
        return Car(driver.id, tuple(order), low, tuple(found), detour)

    def _schedule_back(self, driver: Driver, order: Sequence[str]) -> Car | None:
        offsets, detour = self._route(driver, order)
        if detour > self.detour_limit(driver):
            return None
        riders = [self.riders[r] for r in order]
        leave = max([driver.earliest, *(r.earliest for r in riders)])
        if leave > min([driver.latest, *(r.latest for r in riders)]):
            return None
        return Car(driver.id, tuple(order), leave, tuple(leave + o for o in offsets), detour)

    def best_car(self, driver: Driver, riders: Iterable[str]) -> Car | None:
        """The feasible order of these riders with the least detour, or None."""
        members = list(riders)
        if len(members) <= EXACT_ORDER_UP_TO:
            cars = (self.schedule(driver, order) for order in permutations(members))
            feasible = [c for c in cars if c is not None]
            return min(feasible, key=lambda c: (c.detour, c.riders), default=None)
        car: Car | None = Car(driver.id, (), driver.earliest, (), 0)
        for rider in members:
            car = self.insert(driver, car, rider) if car is not None else None
        return car

    def insert(self, driver: Driver, car: Car, rider: str) -> Car | None:
        """`car` with `rider` added at the best pickup position, or None if none works."""
        if len(car.riders) >= driver.seats:
            return None
        options = (
            self.schedule(driver, (*car.riders[:i], rider, *car.riders[i:]))
            for i in range(len(car.riders) + 1)
        )
        return min((c for c in options if c is not None), key=lambda c: c.detour, default=None)

    # -- why a rider stays unmatched ------------------------------------------------------

    def reason(self, rider: str) -> Reason:
        near = [
            d
            for d in self.drivers.values()
            if (d.id, rider) not in self.forbidden
            and self._single_detour(d, rider) <= self.detour_limit(d)
        ]
        if not near:
            return Reason.NO_DRIVER_NEAR
        if all(self.schedule(d, (rider,)) is None for d in near):
            return Reason.WINDOW_MISMATCH
        return Reason.SEATS_FULL

    def _single_detour(self, driver: Driver, rider: str) -> int:
        return (
            self.minutes(driver.id, rider) + self.minutes(rider, "") - self.minutes(driver.id, "")
        )

    def candidates(self, keep: int = CANDIDATES_KEPT) -> dict[str, list[str]]:
        """Each rider's drivers who could take them alone, the `keep` with the least detour.

        The cheap filters run on whole arrays (NumPy): the detour for the rider alone within
        the driver's limit, and windows that can meet (leaving at the earliest and waiting
        for the rider if need be)."""
        drivers, riders = list(self.drivers.values()), list(self.riders.values())
        found: dict[str, list[tuple[int, str]]] = {r.id: [] for r in riders}
        if not drivers or not riders:
            return {r: [] for r in found}
        home = _minutes_matrix([d.origin for d in drivers], [r.origin for r in riders])
        venue = _minutes_matrix([self.venue], [r.origin for r in riders])[0]
        direct = _minutes_matrix([d.origin for d in drivers], [self.venue])[:, 0]
        limits = np.array([self.detour_limit(d) for d in drivers])
        near = home + venue[None, :] - direct[:, None] <= limits[:, None]
        d_early = np.array([d.earliest for d in drivers])[:, None]
        d_late = np.array([d.latest for d in drivers])[:, None]
        r_early = np.array([r.earliest for r in riders])[None, :]
        r_late = np.array([r.latest for r in riders])[None, :]
        if self.direction == Direction.TO:
            # Picked up in their window, with the least detour any departure allows: leaving
            # as late as possible (waiting for a rider counts as detour, but a pickup on the
            # way may also save a minute or two of the direct trip, so the two add up).
            leave = np.minimum(d_late, r_late - home)
            least = np.maximum(leave + home, r_early) + venue[None, :] - leave - direct[:, None]
            meet = (d_early + home <= r_late) & (least <= limits[:, None])
        else:
            meet = np.maximum(d_early, r_early) <= np.minimum(d_late, r_late)
        detours = home + venue[None, :] - direct[:, None]
        # Rounding may differ from `minutes` by one in rare cases: a candidate is only a
        # candidate; every car is checked exactly when a rider is put in it.
        for i, j in zip(*np.nonzero(near & meet), strict=True):
            if detours[i, j] <= limits[i]:
                found[riders[j].id].append((int(detours[i, j]), drivers[i].id))
        return {r: [d for _, d in sorted(options)[:keep]] for r, options in found.items()}


# -- matching --------------------------------------------------------------------------------


def plan(trip: Trip, *, improve_rounds: int = 3) -> Plan:
    """Place as many riders as possible, then shorten the total detour."""
    candidates = trip.candidates()
    cars = {d: Car(d, (), trip.drivers[d].earliest, (), 0) for d in sorted(trip.drivers)}
    order = sorted(trip.riders, key=lambda r: (len(candidates[r]), r))
    unplaced = [r for r in order if not _place(trip, cars, r, candidates[r])]
    budget = [REPAIR_BUDGET]  # shared by every repair pass: the bound is on the whole plan
    while unplaced and budget[0] > 0:
        before = len(unplaced)
        unplaced = _repair(trip, cars, unplaced, candidates, budget)
        if len(unplaced) == before:
            break
    for _ in range(improve_rounds):
        if not _improve(trip, cars, candidates):
            break
    return _finish(trip, cars, unplaced)


def replan(trip: Trip, previous: Plan) -> Plan:
    """After a change: keep every car that still works, place the people it affected.

    A car keeps its driver and those of its riders who are still here, allowed and fit (in
    their old order where possible); everyone else without a seat is placed as in `plan`,
    without moving anyone who kept theirs."""
    cars: dict[str, Car] = {
        d: Car(d, (), trip.drivers[d].earliest, (), 0) for d in sorted(trip.drivers)
    }
    for old in previous.cars:
        driver = trip.drivers.get(old.driver)
        if driver is None:
            continue
        kept = [r for r in old.riders if r in trip.riders]
        car = trip.schedule(driver, kept) or trip.best_car(driver, kept)
        while car is None and kept:
            kept.pop()  # the last picked up gives way (seats or a window shrank)
            car = trip.best_car(driver, kept)
        if car is not None:
            cars[driver.id] = car
    seated = {r for c in cars.values() for r in c.riders}
    candidates = trip.candidates()
    waiting = sorted(
        (r for r in trip.riders if r not in seated), key=lambda r: (len(candidates[r]), r)
    )
    unplaced = [r for r in waiting if not _place(trip, cars, r, candidates[r])]
    return _finish(trip, cars, unplaced)


def _place(trip: Trip, cars: dict[str, Car], rider: str, drivers: Sequence[str]) -> bool:
    best: Car | None = None
    for d in drivers:
        car = trip.insert(trip.drivers[d], cars[d], rider)
        if car is not None and (
            best is None or car.detour - cars[d].detour < best.detour - cars[best.driver].detour
        ):
            best = car
    if best is None:
        return False
    cars[best.driver] = best
    return True


def _without(trip: Trip, car: Car, rider: str) -> Car | None:
    """The car without `rider`; None in the rare case that the shorter route no longer fits
    (travel times are whole minutes, so a shortcut can round up by one)."""
    rest = tuple(r for r in car.riders if r != rider)
    driver = trip.drivers[car.driver]
    return trip.schedule(driver, rest) or trip.best_car(driver, rest)


def _repair(
    trip: Trip,
    cars: dict[str, Car],
    unplaced: list[str],
    candidates: Mapping[str, list[str]],
    budget: list[int],
) -> list[str]:
    """An unplaced rider takes the seat of a placed one, who moves to another car — or
    takes someone else's seat there in turn (an ejection chain of REPAIR_DEPTH moves)."""
    still = []
    failed: set[tuple[str, int]] = set()
    for rider in unplaced:
        trial = dict(cars)
        if budget[0] > 0 and _seat(
            trip, trial, rider, candidates, REPAIR_DEPTH, {rider}, failed, budget
        ):
            cars.update(trial)
            failed.clear()  # the cars changed: what failed before may work now
        else:
            still.append(rider)
    return still


#: How many placed riders one unplaced rider may displace in a chain.
REPAIR_DEPTH = 3


def _seat(
    trip: Trip,
    cars: dict[str, Car],
    rider: str,
    candidates: Mapping[str, list[str]],
    depth: int,
    chain: set[str],
    failed: set[tuple[str, int]],
    budget: list[int],
) -> bool:
    """Seat `rider` in `cars` (changed in place only on success), displacing at most
    `depth` others, none of them in `chain`. `failed` remembers (rider, depth) that found
    no way while the cars stayed the same (a bound on the search, not a proof)."""
    budget[0] -= 1
    if _place(trip, cars, rider, candidates[rider]):
        return True
    if depth == 0 or (rider, depth) in failed or budget[0] <= 0:
        return False
    for d in candidates[rider][:REPAIR_WIDTH]:
        for other in cars[d].riders:
            if other in chain:
                continue
            freed = _without(trip, cars[d], other)
            taken = trip.insert(trip.drivers[d], freed, rider) if freed else None
            if taken is None:
                continue
            trial = {**cars, d: taken}
            moved = _excluding(candidates, other, d)
            if _seat(trip, trial, other, moved, depth - 1, chain | {other}, failed, budget):
                cars.update(trial)
                return True
    failed.add((rider, depth))
    return False


def _excluding(
    candidates: Mapping[str, list[str]], rider: str, driver: str
) -> Mapping[str, list[str]]:
    return {**candidates, rider: [d for d in candidates[rider] if d != driver]}


def _improve(trip: Trip, cars: dict[str, Car], candidates: Mapping[str, list[str]]) -> bool:
    """Move single riders to another car when the total detour drops; True if any moved."""
    moved = False
    for d in sorted(cars):
        for rider in cars[d].riders:
            if rider not in cars[d].riders:
                continue
            freed = _without(trip, cars[d], rider)
            if freed is None:
                continue
            saving = cars[d].detour - freed.detour
            for e in candidates[rider]:
                if e == d:
                    continue
                taken = trip.insert(trip.drivers[e], cars[e], rider)
                if taken is not None and taken.detour - cars[e].detour < saving:
                    cars[d], cars[e] = freed, taken
                    moved = True
                    break
    return moved


def _finish(trip: Trip, cars: Mapping[str, Car], unplaced: Iterable[str]) -> Plan:
    return Plan(
        direction=trip.direction,
        cars=tuple(c for _, c in sorted(cars.items()) if c.riders),
        unmatched={r: trip.reason(r) for r in sorted(unplaced)},
    )


# -- company on a train or bus ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Traveller:
    """Someone who would like company on public transport."""

    id: str
    origin: Place
    day: str


def group_company(
    people: Sequence[Traveller], *, max_size: int = 4, within_km: float = 15
) -> list[tuple[str, ...]]:
    """Groups of people leaving the same day from places within `within_km` of each other
    (the same town, or neighbouring ones on one line), at most `max_size` each, largest
    first; people with nobody near travel alone (no group)."""
    left = sorted(people, key=lambda p: (p.day, p.id))
    groups: list[tuple[str, ...]] = []
    while left:
        seed = left.pop(0)
        near = sorted(
            (
                p
                for p in left
                if p.day == seed.day and km_between(seed.origin, p.origin) <= within_km
            ),
            key=lambda p: (km_between(seed.origin, p.origin), p.id),
        )[: max_size - 1]
        if near:
            groups.append((seed.id, *(p.id for p in near)))
            left = [p for p in left if p not in near]
    return groups


def moved_riders(before: Plan, after: Plan) -> set[str]:
    """Riders whose car (driver) differs between two plans (placed or not counts too)."""

    def driver_of(p: Plan) -> dict[str, str]:
        return {r: c.driver for c in p.cars for r in c.riders}

    a, b = driver_of(before), driver_of(after)
    return {r for r in set(a) | set(b) if a.get(r) != b.get(r)}

"""Seats, the waiting list and held offers: the gathering-level state of registration.

The shared state (the gathering run of the registration flow) is small; stored, it is:

    {"registered": [3, 7, …], "waiting": [9, 4, …], "offers": {"12": "2027-05-02T10:00:00+00:00"}}

Invariants (checked by `invariant_violations`, exercised by a random walk in the tests):

1. A person is in at most one of `registered`, `waiting` and `offers`, at most once.
2. `len(registered) + len(offers) <= capacity`: an offer holds a seat until it is accepted,
   declined or expires. (Only an organiser lowering `capacity` can break this; then no new
   seat is given until it holds again, and nobody already registered is dropped.)
3. Nobody waits while a seat is free: `fill` runs after every change that frees a seat, so
   `waiting` is non-empty only when every seat is registered or held.
4. The person's run status agrees: "registered" ⇔ in `registered`, "waiting" ⇔ in `waiting`,
   "offered" ⇔ in `offers`.

The engine runs one transaction at a time and every step reads the shared state afresh, so
read-modify-write here is atomic without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from flows.base import FlowState, Moment
from gateway.model import PersonId


class Seats(FlowState):
    """The gathering-level run's state of registration."""

    registered: list[PersonId] = Field(default_factory=list)
    waiting: list[PersonId] = Field(default_factory=list)
    #: Held offers: person → when the hold expires.
    offers: dict[PersonId, Moment] = Field(default_factory=dict)

    def snapshot(self) -> tuple[object, ...]:
        """What the seats are now, to compare with later: shallow copies, cheaper than the
        JSON (which grows with the gathering) and enough, as steps replace or append to the
        lists and the offers but never change an element in place."""
        extra = dict(self.model_extra or {})
        return (list(self.registered), list(self.waiting), dict(self.offers), extra)

    def free(self, capacity: int) -> int:
        return capacity - len(self.registered) - len(self.offers)

    def place(self, person: PersonId) -> int | None:
        """1-based place on the waiting list."""
        return self.waiting.index(person) + 1 if person in self.waiting else None

    def take(self, person: PersonId, capacity: int, *, waiting_list: bool) -> str:
        """Confirm a person: "registered", "waiting" or "full" (no waiting list).

        A free seat goes to a newcomer only when nobody is waiting, so confirming never
        overtakes the waiting list.
        """
        if person in self.registered:
            return "registered"
        if person in self.waiting:
            return "waiting"
        if self.free(capacity) > 0 and not self.waiting:
            self.release(person)
            self.registered.append(person)
            return "registered"
        if not waiting_list:
            return "full"
        self.release(person)
        self.waiting.append(person)
        return "waiting"

    def accept(self, person: PersonId, now: datetime) -> bool:
        """Turn a held offer into a seat; False when there is none or it has expired."""
        expires = self.offers.get(person)
        if expires is None or now >= expires:
            return False
        del self.offers[person]
        self.registered.append(person)
        return True

    def release(self, person: PersonId) -> None:
        """Remove a person from seats, waiting list and offers (cancel, expiry, decline)."""
        self.registered = [p for p in self.registered if p != person]
        self.waiting = [p for p in self.waiting if p != person]
        self.offers.pop(person, None)

    def fill(
        self, capacity: int, now: datetime, hold: timedelta
    ) -> list[tuple[PersonId, datetime]]:
        """Offer free seats to the head of the waiting list; return the new offers.

        The hold counts from `now` (the real time the seat was freed or the previous hold was
        found expired), so a person is never offered a hold that is already over.
        """
        made: list[tuple[PersonId, datetime]] = []
        while self.free(capacity) > 0 and self.waiting:
            person = self.waiting.pop(0)
            self.offers[person] = now + hold
            made.append((person, now + hold))
        return made


def invariant_violations(
    shared: Mapping[str, Any], capacity: int, statuses: Mapping[PersonId, str]
) -> list[str]:
    """Every broken invariant of the module docstring, described (empty when all hold);
    `shared` is the stored JSON."""
    seats = Seats.model_validate(shared)
    problems: list[str] = []
    everyone = [*seats.registered, *seats.waiting, *seats.offers]
    if len(everyone) != len(set(everyone)):
        problems.append(f"someone is listed twice: {shared}")
    if len(seats.registered) + len(seats.offers) > capacity:
        problems.append(f"more seats taken or held than capacity {capacity}: {shared}")
    if seats.waiting and seats.free(capacity) > 0:
        problems.append(f"people wait while {seats.free(capacity)} seats are free: {shared}")
    expected = {
        **{p: "registered" for p in seats.registered},
        **{p: "waiting" for p in seats.waiting},
        **{p: "offered" for p in seats.offers},
    }
    for person, status in statuses.items():
        listed = expected.get(person)
        if (status in ("registered", "waiting", "offered") or listed) and listed != status:
            problems.append(f"person {person} has status {status!r} but the lists say {listed!r}")
    return problems

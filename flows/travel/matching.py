"""The travel flow's job: plain data in, a plan out (it runs in the job runner's worker).

Input (built by the gathering-level step from everyone's answers):

    {"venue": {"lat", "lon"},
     "to": {"drivers": [{"id", "lat", "lon", "seats", "earliest", "latest", "max_detour"}],
            "riders": [{"id", "lat", "lon", "earliest", "latest"}],
            "forbidden": [[driver, rider], …]},
     "back": {…} or null,
     "company": [{"id", "lat", "lon", "day"}], "group_size": 4,
     "previous": {"to": PLAN, "back": PLAN} or null}

Output: {"to": PLAN, "back": PLAN or null, "company": [[id, …], …]}, where PLAN is
{"cars": [{"driver", "riders", "departure", "stops", "detour"}], "unmatched": {id: reason}}.
With `previous` the plan is a re-plan that moves as few people as possible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.travel.solver import (
    Car,
    Direction,
    Driver,
    Place,
    Plan,
    Reason,
    Rider,
    Traveller,
    Trip,
    group_company,
    plan,
    replan,
)


def match(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    venue = Place(payload["venue"]["lat"], payload["venue"]["lon"])
    previous = payload.get("previous") or {}
    out: dict[str, Any] = {}
    for direction in Direction:
        side = payload.get(direction.value)
        if not side:
            out[direction.value] = None
            continue
        trip = _trip(venue, side, direction)
        before = previous.get(direction.value)
        result = replan(trip, plan_from(before, direction)) if before else plan(trip)
        out[direction.value] = plan_to_json(result, trip)
    company = [
        Traveller(p["id"], Place(p["lat"], p["lon"]), p["day"]) for p in payload.get("company", [])
    ]
    out["company"] = [
        list(g) for g in group_company(company, max_size=payload.get("group_size", 4))
    ]
    return out


def _trip(venue: Place, side: Mapping[str, Any], direction: Direction) -> Trip:
    drivers = {
        d["id"]: Driver(
            d["id"],
            Place(d["lat"], d["lon"]),
            d["seats"],
            d["earliest"],
            d["latest"],
            d.get("max_detour"),
        )
        for d in side.get("drivers", [])
    }
    riders = {
        r["id"]: Rider(r["id"], Place(r["lat"], r["lon"]), r["earliest"], r["latest"])
        for r in side.get("riders", [])
    }
    forbidden = frozenset((str(a), str(b)) for a, b in side.get("forbidden", []))
    return Trip(venue, drivers, riders, direction, forbidden)


def plan_to_json(result: Plan, trip: Trip) -> dict[str, Any]:
    return {
        "cars": [
            {
                "driver": c.driver,
                "riders": list(c.riders),
                "departure": c.departure,
                "stops": list(c.stops),
                "detour": c.detour,
                "arrival": _arrival(trip, c),
            }
            for c in result.cars
        ],
        "unmatched": {r: str(reason) for r, reason in result.unmatched.items()},
    }


def _arrival(trip: Trip, car: Car) -> int:
    """When the ride ends: at the venue (way there), at the last drop-off (way back)."""
    if not car.riders:
        return car.departure
    if trip.direction == Direction.TO:
        return car.stops[-1] + trip.minutes(car.riders[-1], "")
    return car.stops[-1]


def plan_from(data: Mapping[str, Any], direction: Direction) -> Plan:
    return Plan(
        direction,
        tuple(
            Car(c["driver"], tuple(c["riders"]), c["departure"], tuple(c["stops"]), c["detour"])
            for c in data.get("cars", [])
        ),
        {r: Reason(v) for r, v in data.get("unmatched", {}).items()},
    )

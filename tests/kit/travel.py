"""An independent check of a travel plan: every car can really be driven.

Written from the model's description, not from the solver's code, so that the property
tests and the benchmark do not trust the solver to check itself.
"""

from __future__ import annotations

import itertools

from flows.travel.solver import Car, Direction, Trip


def drivable(trip: Trip, car: Car) -> bool:
    """Seats, one order, one departure inside every window, waiting allowed on the way
    there, and the driver's detour limit (driving and waiting)."""
    driver = trip.drivers[car.driver]
    if len(car.riders) > driver.seats or len(set(car.riders)) != len(car.riders):
        return False
    if any((driver.id, r) in trip.forbidden for r in car.riders):
        return False
    if not driver.earliest <= car.departure <= driver.latest:
        return False
    if trip.direction == Direction.TO:
        stops = [driver.id, *car.riders, ""]
    else:
        stops = ["", *car.riders, driver.id]
    route = sum(trip.minutes(a, b) for a, b in itertools.pairwise(stops))
    if route - trip.minutes(driver.id, "") > trip.detour_limit(driver):
        return False
    if trip.direction == Direction.BACK:
        riders = [trip.riders[r] for r in car.riders]
        return all(r.earliest <= car.departure <= r.latest for r in riders)
    now, here = car.departure, driver.id
    for rider_id, stop in zip(car.riders, car.stops, strict=True):
        rider = trip.riders[rider_id]
        now = max(now + trip.minutes(here, rider_id), rider.earliest)
        if now != stop or not rider.earliest <= stop <= rider.latest:
            return False
        here = rider_id
    # Waiting for a rider is time out of the driver's way as well.
    arrival = now + trip.minutes(here, "")
    if car.riders and arrival - car.departure - trip.minutes(driver.id, "") > trip.detour_limit(
        driver
    ):
        return False
    return True

"""Benchmark of ride matching on seeded instances.

    python -m bench.travel                  # 500 riders × 200 drivers and 2,000 × 800
    python -m bench.travel --sizes 500      # one size

~25 towns within 300 km of a venue, people spread a few km around them, windows of one to
three hours, seats 1–4, some drivers with their own detour limit. For each instance it
prints: riders matched against the pair-wise max-flow upper bound (riders to drivers with
seat capacities over pairs each feasible alone, computed here with OR-Tools), the share of
cars whose whole plan is drivable (checked again, independently of the solver), the total
detour against the proven optimum where a set-partitioning MILP over every drivable car
(HiGHS) finishes within its time limit, time and peak memory. Each instance runs in its own
process, so peak memory is that instance's.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from typing import Any

from flows.travel.solver import Car, Direction, Driver, Place, Rider, Trip, plan
from tests.kit.travel import drivable

VENUE = Place(39.60, -8.20)


def generate(riders: int, drivers: int, seed: int) -> Trip:
    rng = random.Random(seed)
    towns = []
    for _ in range(25):
        km, bearing = rng.uniform(20, 300), rng.uniform(0, 2 * math.pi)
        towns.append(
            Place(
                VENUE.lat + km * math.cos(bearing) / 111.0,
                VENUE.lon + km * math.sin(bearing) / (111.0 * math.cos(math.radians(VENUE.lat))),
            )
        )

    def near(town: Place) -> Place:
        return Place(town.lat + rng.gauss(0, 0.03), town.lon + rng.gauss(0, 0.03))

    def window() -> tuple[int, int]:
        start = rng.randrange(8 * 60, 15 * 60, 15)
        return start, start + rng.choice((60, 90, 120, 180))

    ds = {}
    for n in range(drivers):
        start, end = window()
        detour = rng.choice((None, None, 20, 30, 60))
        seats = rng.choice((1, 2, 3, 3, 4))
        ds[f"d{n}"] = Driver(f"d{n}", near(rng.choice(towns)), seats, start, end, detour)
    rs = {}
    for n in range(riders):
        start, end = window()
        rs[f"r{n}"] = Rider(f"r{n}", near(rng.choice(towns)), start, end)
    return Trip(VENUE, ds, rs, Direction.TO)


def upper_bound(trip: Trip) -> int:
    """Max flow riders → drivers over pairs each drivable alone, seats as capacities."""
    from ortools.graph.python import max_flow

    flow = max_flow.SimpleMaxFlow()
    drivers = sorted(trip.drivers)
    riders = sorted(trip.riders)
    source, sink = 0, 1
    index = {d: 2 + i for i, d in enumerate(drivers)}
    index |= {r: 2 + len(drivers) + i for i, r in enumerate(riders)}
    for rider, options in trip.candidates(keep=len(trip.drivers)).items():
        flow.add_arc_with_capacity(source, index[rider], 1)
        for driver in options:
            flow.add_arc_with_capacity(index[rider], index[driver], 1)
    for driver in drivers:
        flow.add_arc_with_capacity(index[driver], sink, trip.drivers[driver].seats)
    flow.solve(source, sink)
    return int(flow.optimal_flow())


def exact(trip: Trip, matched_target: int, limit: float) -> dict[str, Any]:
    """The least total detour with at least `matched_target` riders placed, over every
    drivable car (enumerated by growing drivable rider sets), by HiGHS; None if not proven."""
    import highspy
    import numpy as np

    started = time.perf_counter()
    candidates = trip.candidates(keep=len(trip.drivers))
    by_driver: dict[str, list[str]] = {d: [] for d in trip.drivers}
    for rider, options in candidates.items():
        for d in options:
            by_driver[d].append(rider)
    cars: list[Car] = []
    for d, riders in by_driver.items():
        driver = trip.drivers[d]
        frontier = [(r,) for r in sorted(riders)]
        while frontier:
            grown = []
            for group in frontier:
                car = trip.best_car(driver, group)
                if car is None:
                    continue
                cars.append(car)
                if len(group) < driver.seats:
                    grown += [(*group, r) for r in sorted(riders) if r > group[-1]]
            frontier = grown
            if time.perf_counter() - started > limit / 2:
                return {"proven": False, "cars": len(cars), "why": "enumeration too long"}
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(1.0, limit - (time.perf_counter() - started)))
    rows = {r: i for i, r in enumerate(sorted(trip.riders))}
    rows |= {d: len(rows) + i for i, d in enumerate(sorted(trip.drivers))}
    n = len(cars)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, len(rows) + 1
    lp.col_cost_ = np.array([c.detour for c in cars], dtype=float)
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lp.row_lower_ = np.array([0.0] * len(rows) + [float(matched_target)])
    lp.row_upper_ = np.array([1.0] * len(rows) + [highspy.kHighsInf])
    starts, index, values = [], [], []
    for car in cars:
        starts.append(len(index))
        for member in (car.driver, *car.riders):
            index.append(rows[member])
            values.append(1.0)
        index.append(len(rows))
        values.append(float(len(car.riders)))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array([*starts, len(index)])
    lp.a_matrix_.index_ = np.array(index)
    lp.a_matrix_.value_ = np.array(values)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    proven = status == highspy.HighsModelStatus.kOptimal
    objective = h.getInfo().objective_function_value if proven else None
    return {
        "proven": proven,
        "cars": n,
        "optimum": objective,
        "status": h.modelStatusToString(status),
    }


def run_one(riders: int, drivers: int, seed: int, exact_limit: float) -> dict[str, Any]:
    trip = generate(riders, drivers, seed)
    started = time.perf_counter()
    result = plan(trip)
    took = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trip_check = generate(riders, drivers, seed)
    feasible = sum(drivable(trip_check, c) for c in result.cars)
    bound = upper_bound(trip_check)
    out: dict[str, Any] = {
        "size": f"{riders}x{drivers}",
        "seconds": round(took, 2),
        "peak_mb": round(peak_mb),
        "matched": result.matched,
        "bound": bound,
        "cars": len(result.cars),
        "feasible_cars": feasible,
        "detour": result.detour,
        "unmatched_reasons": {
            str(r): sum(1 for v in result.unmatched.values() if v == r)
            for r in set(result.unmatched.values())
        },
    }
    if exact_limit > 0:
        out["exact"] = exact(trip_check, result.matched, exact_limit)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[500, 2000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--exact-seconds", type=float, default=90.0)
    parser.add_argument("--one", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        riders, drivers, limit = args.one
        print(json.dumps(run_one(riders, drivers, args.seed, limit)))
        return
    for size in args.sizes:
        drivers = size * 2 // 5
        limit = args.exact_seconds if size <= 500 else 0
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.travel",
                "--seed",
                str(args.seed),
                "--one",
                str(size),
                str(drivers),
                str(int(limit)),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(done.stdout)
        print(f"{r['size']}: {r['seconds']} s, peak {r['peak_mb']} MB")
        print(
            f"  matched {r['matched']} of an upper bound of {r['bound']}"
            f" ({100 * r['matched'] / max(1, r['bound']):.1f}%)"
        )
        print(
            f"  cars {r['cars']}, drivable {r['feasible_cars']}"
            f" ({100 * r['feasible_cars'] / max(1, r['cars']):.0f}%)"
        )
        print(f"  total detour {r['detour']} min; unmatched: {r['unmatched_reasons']}")
        if "exact" in r:
            e = r["exact"]
            if e.get("proven"):
                gap = 100 * (r["detour"] - e["optimum"]) / max(1.0, e["optimum"])
                print(
                    f"  exact optimum for as many riders: {e['optimum']:.0f} min over"
                    f" {e['cars']} drivable cars (ours +{gap:.1f}%)"
                )
            else:
                print(f"  exact optimum not proven: {e}")


if __name__ == "__main__":
    main()

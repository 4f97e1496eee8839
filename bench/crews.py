"""Benchmark of the crew solver on seeded generated camps.

    python -m bench.crews                 # full run: hours
    python -m bench.crews --quick         # a couple of minutes
    python -m bench.crews --sizes 90 300 --seeds 3 --budget 30 --reference-budget 120
    python -m bench.crews --sizes 300 --pinned-facilitators   # one facilitator pinned per crew

Each instance runs in its own process so peak memory (ru_maxrss, which includes
the C++ solver) belongs to that instance alone. The reference is the proven
optimum when CP-SAT proves one, else the best objective known: the better of the
answer and a long CP-SAT run (whole-camp model hinted with the answer; above 600
people the whole model is too big, so a longer run of the solver itself).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping

from bench.instances import generate, pin_facilitators
from flows.crews.solver import cpsat
from flows.crews.solver.problem import compile_problem, evaluate
from flows.crews.solver.solve import SolveOptions, SolverInput, solve

DEFAULT_SEEDS = {30: 10, 60: 10, 90: 10, 120: 10, 300: 5, 600: 5, 2000: 3}
MARKS = (1.0, 5.0, 30.0)
WHOLE_MODEL_MAX = 600


def run_one(
    n: int, seed: int, budget: float, ref_budget: float, pinned: bool = False
) -> dict[str, object]:
    inp = generate(n, seed)
    if pinned:
        inp = pin_facilitators(inp, compile_problem(inp).k, seed)
    trace: list[tuple[float, int]] = []
    res = solve(
        inp,
        SolveOptions(time_budget=budget, seed=seed, deterministic=False),
        progress=lambda t, obj: trace.append((t, obj)),
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, object] = {
        "n": n,
        "seed": seed,
        "valid": res.valid,
        "status": res.status.value,
        "objective": res.objective,
        "elapsed": res.elapsed,
        "peak_mb": peak_mb,
        "first": trace[0][0] if trace else None,
        "at": {str(m): min((o for t, o in trace if t <= m), default=None) for m in MARKS},
        "proven_at": res.elapsed if res.status.value == "optimal" else None,
    }
    if res.valid and ref_budget > 0:
        out.update(_reference(inp, res.assignment, seed, ref_budget))
    return out


def _reference(
    inp: SolverInput, assignment: Mapping[str, int], seed: int, ref_budget: float
) -> dict[str, object]:
    pb = compile_problem(inp)
    ours = [assignment[pid] for pid in pb.ids]
    best = evaluate(pb, ours).total
    if pb.n <= WHOLE_MODEL_MAX:
        built = cpsat.build(pb, range(pb.n), range(pb.k), hint=ours)
        ref = cpsat.solve(built, pb, ref_budget, seed, 2, False)
        proven = ref.status == "optimal"
        value = min(best, ref.objective) if ref.objective is not None else best
        return {"reference": value, "ref_proven": proven, "ref_bound": ref.bound}
    longer = solve(inp, SolveOptions(time_budget=ref_budget, seed=seed + 1000, deterministic=False))
    value = min(best, longer.objective if longer.objective is not None else best)
    return {"reference": value, "ref_proven": False, "ref_bound": None}


def _ratio(obj: object, ref: object) -> str:
    if not isinstance(obj, int) or not isinstance(ref, int):
        return "-"
    if ref == 0:
        return "1.000" if obj == 0 else f"+{obj}"
    return f"{obj / ref:.3f}"


def _fmt(x: object, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def report(rows: list[dict[str, object]]) -> None:
    print("\nSummary (medians; ratio = objective / reference of the same run)")
    head = (
        "size",
        "runs",
        "valid",
        "first_s",
        "r@1s",
        "r@5s",
        "r@30s",
        "r@end",
        "proven<=5s",
        "ref_proven",
        "peak_MB",
    )
    print(" ".join(f"{h:>10}" for h in head))
    for n in sorted({int(str(r["n"])) for r in rows}):
        sub = [r for r in rows if r["n"] == n]
        firsts = [float(str(r["first"])) for r in sub if r["first"] is not None]

        def med_ratio(key: str | None, sub: list[dict[str, object]] = sub) -> str:
            vals = []
            for r in sub:
                obj = r["objective"] if key is None else r["at"][key]  # type: ignore[index]
                text = _ratio(obj, r.get("reference"))
                if text[0].isdigit():
                    vals.append(float(text))
            return f"{statistics.median(vals):.3f}" if vals else "-"

        proven5 = sum(
            1 for r in sub if r["proven_at"] is not None and float(str(r["proven_at"])) <= 5
        )
        cells = (
            n,
            len(sub),
            sum(bool(r["valid"]) for r in sub),
            _fmt(statistics.median(firsts) if firsts else None, 3),
            med_ratio("1.0"),
            med_ratio("5.0"),
            med_ratio("30.0"),
            med_ratio(None),
            f"{proven5}/{len(sub)}",
            sum(bool(r.get("ref_proven")) for r in sub),
            _fmt(max(float(str(r["peak_mb"])) for r in sub), 0),
        )
        print(" ".join(f"{str(c):>10}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=sorted(DEFAULT_SEEDS))
    ap.add_argument("--seeds", type=int, default=None, help="seeds per size (default varies)")
    ap.add_argument("--budget", type=float, default=30.0, help="solver seconds per instance")
    ap.add_argument("--reference-budget", type=float, default=300.0)
    ap.add_argument("--quick", action="store_true", help="smoke run: a couple of minutes")
    ap.add_argument(
        "--pinned-facilitators", action="store_true", help="pin one facilitator to each crew"
    )
    ap.add_argument("--one", type=int, nargs=2, metavar=("N", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        row = run_one(
            args.one[0], args.one[1], args.budget, args.reference_budget, args.pinned_facilitators
        )
        print(json.dumps(row))
        return
    if args.quick:
        args.sizes, args.seeds, args.budget, args.reference_budget = [30, 90, 300], 1, 5.0, 15.0
    rows: list[dict[str, object]] = []
    print(f"budget {args.budget}s, reference budget {args.reference_budget}s")
    print(
        f"{'size':>5} {'seed':>4} {'status':>9} {'first_s':>8} {'obj@1s':>7} {'obj@5s':>7} "
        f"{'obj@30s':>7} {'final':>7} {'ref':>7} {'ratio':>6} {'proven':>6} {'peak_MB':>7}"
    )
    for n in args.sizes:
        for seed in range(args.seeds or DEFAULT_SEEDS.get(n, 3)):
            started = time.monotonic()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.crews",
                    "--one",
                    str(n),
                    str(seed),
                    "--budget",
                    str(args.budget),
                    "--reference-budget",
                    str(args.reference_budget),
                    *(["--pinned-facilitators"] if args.pinned_facilitators else []),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(
                    f"{n:>5} {seed:>4} crashed after {time.monotonic() - started:.0f}s: "
                    f"{proc.stderr.strip().splitlines()[-1:]}"
                )
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(r)
            at = r["at"]
            print(
                f"{n:>5} {seed:>4} {r['status']:>9} {_fmt(r['first'], 3):>8} "
                f"{_fmt(at['1.0']):>7} {_fmt(at['5.0']):>7} {_fmt(at['30.0']):>7} "
                f"{_fmt(r['objective']):>7} {_fmt(r.get('reference')):>7} "
                f"{_ratio(r['objective'], r.get('reference')):>6} "
                f"{'yes' if r.get('ref_proven') else 'no':>6} {r['peak_mb']:>7.0f}",
                flush=True,
            )
    report(rows)


if __name__ == "__main__":
    main()

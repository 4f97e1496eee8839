"""Registration burst through the engine, against the durable ceiling of the same database.

    python -m bench.engine [--participants 2000] [--durability full|normal] [--separate]

Every simulated participant says hello, answers every question one message at a time (the
Matrix way) and confirms, interleaved with everyone else. Each message is one engine
transaction on a fresh SQLite file. The baseline, measured in the same run with the same
connection settings, is one INSERT + COMMIT per message: what any durable engine that
records its input must at least pay. The figure of interest is the ratio.

One at a time, the baseline's transaction and the engine's message take turns, message by
message, so that both meet the same machine: on a shared one, a baseline measured a minute
before the engine made the ratio swing with the neighbours' load. `--separate` measures
the baseline first and the engine after it, as earlier versions of this bench did.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from flows.config import GatheringConfig
from gateway.app.registry import default_flows
from gateway.app.service import build_engine
from gateway.config import LoadedConfig, ServiceConfig, StoreSettings
from gateway.core.engine import Engine
from gateway.demo.simulate import SimulatedPerson
from gateway.model import Channel, InboundMessage
from gateway.store import open_store
from gateway.store.db import Durability, Store

BENCH_GATHERING = Path(__file__).resolve().parent.parent / "gatherings" / "summer-camp.toml"


def load_gathering(capacity: int) -> GatheringConfig:
    import tomllib

    data = tomllib.loads(BENCH_GATHERING.read_text())
    data["capacity"] = capacity
    data["registration"].pop("opens_at", None)
    data["registration"].pop("closes_at", None)
    return GatheringConfig.model_validate(data)


def scripts(gathering: GatheringConfig, participants: int, seed: int) -> list[list[InboundMessage]]:
    """Each participant's messages, in the order they send them."""
    rng = random.Random(seed)
    reference = (
        gathering.starts if not isinstance(gathering.starts, datetime) else gathering.starts.date()
    )
    people = [
        SimulatedPerson(n, Channel.MATRIX, random.Random(rng.random())) for n in range(participants)
    ]
    all_scripts: list[list[InboundMessage]] = []
    for person in people:
        script = [person.says("hello")]
        while (
            answer := person.next_answer(gathering.registration.questions, reference)
        ) is not None:
            script.append(person.says(answer))
        script.append(person.says("yes"))
        all_scripts.append(script)
    return all_scripts


def round_robin(all_scripts: list[list[InboundMessage]]) -> list[InboundMessage]:
    """One message of each participant in turn: the order a sequential burst arrives in."""
    burst: list[InboundMessage] = []
    for step in range(max(len(s) for s in all_scripts)):
        burst.extend(s[step] for s in all_scripts if step < len(s))
    return burst


async def run_engine(
    path: Path,
    gathering: GatheringConfig,
    all_scripts: list[list[InboundMessage]],
    durability: Durability,
    *,
    concurrent: bool,
) -> tuple[list[float], float]:
    """Per-message latencies and the wall time of the whole burst.

    Sequential: one message at a time, round robin. Concurrent: every participant is a task
    sending their next message as soon as the previous one is handled, as people answering
    at the same time do; the engine then commits what arrives together in one transaction.
    """
    # The engine as the service builds it (`build_engine`: its flows, templates, store).
    config = LoadedConfig(
        path=path.parent / "gateway.toml",
        service=ServiceConfig(store=StoreSettings(path=path, durability=durability)),
        gatherings={gathering.slug: gathering},
        sources={},
    )
    engine = await build_engine(config)
    store = engine.store
    latencies: list[float] = []

    async def send(messages: list[InboundMessage]) -> None:
        for message in messages:
            start = time.perf_counter()
            await engine.handle(message)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(send(script) for script in all_scripts))
    else:
        await send(round_robin(all_scripts))
    wall = time.perf_counter() - began
    await store.close()
    return latencies, wall


async def run_interleaved(
    base_path: Path,
    engine_path: Path,
    gathering: GatheringConfig,
    burst: list[InboundMessage],
    durability: Durability,
) -> tuple[list[float], list[float]]:
    """Baseline and engine latencies, one message at a time, taking turns."""
    base = await open_store(base_path, durability=durability)
    await base.conn.execute(BASELINE_TABLE)
    store = await open_store(engine_path, durability=durability)
    engine = Engine(
        store, default_flows(), {gathering.slug: gathering}, clock=lambda: datetime.now(UTC)
    )
    base_latencies: list[float] = []
    engine_latencies: list[float] = []
    for message in burst:
        base_latencies.append(await baseline_transaction(base, message))
        start = time.perf_counter()
        await engine.handle(message)
        engine_latencies.append(time.perf_counter() - start)
    await store.close()
    await base.close()
    return base_latencies, engine_latencies


BASELINE_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_baseline (id INTEGER PRIMARY KEY, channel TEXT,"
    " external_id TEXT, body TEXT, UNIQUE (channel, external_id))"
)


async def baseline_transaction(store: Store, message: InboundMessage) -> float:
    """One INSERT + COMMIT; its latency.

    Written with aiosqlite's own calls (BEGIN, INSERT, COMMIT: three hops to its thread), not
    `Store.transaction`, so that the ceiling stays the same measure when the store changes.
    """
    start = time.perf_counter()
    await store.conn.execute("BEGIN IMMEDIATE")
    await store.conn.execute_fetchall(
        "INSERT INTO bench_baseline (channel, external_id, body) VALUES (?, ?, ?)",
        (message.channel.value, message.external_id, message.text),
    )
    await store.conn.commit()
    return time.perf_counter() - start


async def run_baseline(
    path: Path, burst: list[InboundMessage], durability: Durability
) -> list[float]:
    """One INSERT + COMMIT per message, one message at a time."""
    store = await open_store(path, durability=durability)
    await store.conn.execute(BASELINE_TABLE)
    latencies = [await baseline_transaction(store, message) for message in burst]
    await store.close()
    return latencies


class HopCounter:
    total = 0

    def clear(self) -> None:
        self.total = 0


def count_hops() -> HopCounter:
    """Count every call aiosqlite queues for its thread (each is one round trip)."""
    counter = HopCounter()
    queue_call: Any = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counter.total += 1
        return await queue_call(self, fn, *args, **kwargs)

    aiosqlite.Connection._execute = counted  # type: ignore[method-assign]
    return counter


def describe(name: str, latencies: list[float], wall: float) -> float:
    rate = len(latencies) / wall
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<22} {len(latencies):>7} msgs  {rate:>8.0f} msg/s  "
        f"p50 {q[49] * 1000:6.2f} ms  p99 {q[98] * 1000:6.2f} ms"
    )
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=2000)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--separate", action="store_true", help="baseline first, then the engine (old method)"
    )
    parser.add_argument(
        "--hops", action="store_true", help="also count hops to the database thread per message"
    )
    args = parser.parse_args()
    gathering = load_gathering(capacity=args.participants * 3 // 4)
    all_scripts = scripts(gathering, args.participants, args.seed)
    burst = round_robin(all_scripts)
    answers = len(burst) - 2 * args.participants
    print(
        f"{args.participants} participants, {answers / args.participants:.1f} answers each,"
        f" {len(burst)} messages; synchronous={args.durability.upper()}, WAL"
    )
    hops = count_hops() if args.hops else None
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        base_file, seq_file = Path(tmp) / "base.sqlite3", Path(tmp) / "seq.sqlite3"
        if args.separate:
            lat = await run_baseline(base_file, burst, args.durability)
            base = describe("baseline INSERT+COMMIT", lat, sum(lat))
            if hops:
                hops.clear()
            lat, wall = await run_engine(
                seq_file, gathering, all_scripts, args.durability, concurrent=False
            )
            sequential = describe("engine, one at a time", lat, wall)
        else:
            base_lat, lat = await run_interleaved(
                base_file, seq_file, gathering, burst, args.durability
            )
            base = describe("baseline INSERT+COMMIT", base_lat, sum(base_lat))
            sequential = describe("engine, one at a time", lat, sum(lat))
        if hops:
            # Interleaved, the baseline's three per message are among them.
            own = (hops.total - (0 if args.separate else 3 * len(burst))) / len(burst)
            print(f"  hops to the database thread per engine message: {own:.2f}")
            hops.clear()
        lat, wall = await run_engine(
            Path(tmp) / "burst.sqlite3", gathering, all_scripts, args.durability, concurrent=True
        )
        burst_rate = describe("engine, all at once", lat, wall)
        if hops:
            print(f"  hops to the database thread per message: {hops.total / len(burst):.2f}")
    print(
        f"ratio engine/baseline: one at a time {sequential / base:.2f},"
        f" all at once {burst_rate / base:.2f}  (goal >= 0.50)"
    )


if __name__ == "__main__":
    asyncio.run(main())

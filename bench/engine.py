"""Registration burst through the engine, against the durable ceiling of the same database.

    python -m bench.engine [--participants 2000] [--durability full|normal]

Every simulated participant says hello, answers every question one message at a time (the
Matrix way) and confirms, interleaved with everyone else. Each message is one engine
transaction on a fresh SQLite file. The baseline, measured in the same run on the same file
and connection settings, is one INSERT + COMMIT per message: what any durable engine that
records its input must at least pay. The figure of interest is the ratio.
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

from flows.config import GatheringConfig
from gateway.app.registry import default_flows
from gateway.core.engine import Engine
from gateway.demo.simulate import SimulatedPerson
from gateway.model import Channel, InboundMessage
from gateway.store import open_store
from gateway.store.db import Durability

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
    store = await open_store(path, durability=durability)
    engine = Engine(
        store, default_flows(), {gathering.slug: gathering}, clock=lambda: datetime.now(UTC)
    )
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


async def run_baseline(
    path: Path, burst: list[InboundMessage], durability: Durability
) -> list[float]:
    """One INSERT + COMMIT per message, one message at a time.

    Written with aiosqlite's own calls (BEGIN, INSERT, COMMIT: three hops to its thread), not
    `Store.transaction`, so that the ceiling stays the same measure when the store changes.
    """
    store = await open_store(path, durability=durability)
    await store.conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_baseline (id INTEGER PRIMARY KEY, channel TEXT,"
        " external_id TEXT, body TEXT, UNIQUE (channel, external_id))"
    )
    latencies = []
    for message in burst:
        start = time.perf_counter()
        await store.conn.execute("BEGIN IMMEDIATE")
        await store.conn.execute_fetchall(
            "INSERT INTO bench_baseline (channel, external_id, body) VALUES (?, ?, ?)",
            (message.channel.value, message.external_id, message.text),
        )
        await store.conn.commit()
        latencies.append(time.perf_counter() - start)
    await store.close()
    return latencies


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
    args = parser.parse_args()
    gathering = load_gathering(capacity=args.participants * 3 // 4)
    all_scripts = scripts(gathering, args.participants, args.seed)
    burst = round_robin(all_scripts)
    answers = len(burst) - 2 * args.participants
    print(
        f"{args.participants} participants, {answers / args.participants:.1f} answers each,"
        f" {len(burst)} messages; synchronous={args.durability.upper()}, WAL"
    )
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        lat = await run_baseline(Path(tmp) / "base.sqlite3", burst, args.durability)
        base = describe("baseline INSERT+COMMIT", lat, sum(lat))
        lat, wall = await run_engine(
            Path(tmp) / "seq.sqlite3", gathering, all_scripts, args.durability, concurrent=False
        )
        sequential = describe("engine, one at a time", lat, wall)
        lat, wall = await run_engine(
            Path(tmp) / "burst.sqlite3", gathering, all_scripts, args.durability, concurrent=True
        )
        burst_rate = describe("engine, all at once", lat, wall)
    print(
        f"ratio engine/baseline: one at a time {sequential / base:.2f},"
        f" all at once {burst_rate / base:.2f}  (goal >= 0.50)"
    )


if __name__ == "__main__":
    asyncio.run(main())

"""1,000 personalised calendar invites through the outbox worker and EmailTransport.

    python -m bench.email_fanout [--count 1000] [--connections 2] [--rounds 3]

All runs send to the same in-process aiosmtpd sink. The baseline is a bare aiosmtplib loop
sending the very same bytes over one reused connection: it measures what SMTP on this
machine costs, so the ratio shows what the outbox (claim, mark sent in SQLite) and the
transport (compose, iMIP, pool) add on top. A third run sends the same rows through the
worker and pool with the bytes already built, to tell composition from plumbing.

The three runs take turns for several rounds and the medians are reported: on a shared
machine one run alone swings by a factor of two, and the first run of a process also pays
for warming up (imports, SQLite's cache, the first connections). The CPU time the process
spent (all threads: the sink, the client, aiosqlite's) is reported beside the wall clock,
as `cpu_ratio`: it hardly moves when other work shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib

from gateway.channels.email.inbound import token_maker
from gateway.channels.email.send import EmailTransport
from gateway.config import EmailSettings
from gateway.core.outbox import OutboxWorker, item_from_row
from gateway.core.payload import RowPayload
from gateway.model import Invite, OutboxItem, PersonId, TextBody
from gateway.store.db import now_iso, open_store
from tests.kit import email as kit
from tests.servers import SmtpSink

GATEWAY = "camp@example.test"
#: tmpfs when there is one, so disk speed does not enter the figures.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


@dataclass(frozen=True)
class Took:
    wall: float
    cpu: float


class Stopwatch:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Took:
        return Took(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def invite(n: int) -> Invite:
    return Invite(
        uid=f"camp-2027-{n}@example.test",
        sequence=0,
        method="REQUEST",
        summary="Camp 2027",
        start=datetime(2027, 7, 1, 16, tzinfo=UTC),
        end=datetime(2027, 7, 5, 12, tzinfo=UTC),
        tzid="Europe/Lisbon",
        location="Quinta do Vale",
        description="Bring a sleeping bag.",
    )


async def queue(db: Path, count: int, email: EmailSettings) -> None:
    """Outbox rows as the engine writes them: one personalised invite per person."""
    store = await open_store(db, durability="normal")
    make = token_maker(email)
    async with store.transaction() as tx:
        for n in range(1, count + 1):
            payload = RowPayload(
                is_reply=False,
                reply_token=make(PersonId(n), "camp/registration"),
                body=TextBody(
                    subject="Camp 2027: your invitation",
                    invite=invite(n),
                    text=f"Dear Person {n},\n\nyou are in. The invitation is attached.\n",
                    html=f"<p>Dear Person {n},</p><p>you are in.</p>",
                ),
            )
            await tx.execute(
                "INSERT INTO outbox (idempotency_key, gathering, flow, channel, address, kind,"
                " payload, next_attempt_at, created_at) VALUES (?, 'camp', 'registration',"
                " 'email', ?, 'text', ?, ?, ?)",
                (
                    f"bench:invite:{n}",
                    f"person{n}@example.net",
                    payload.model_dump_json(),
                    now_iso(),
                    now_iso(),
                ),
            )
    await store.close()


async def reset(db: Path) -> None:
    """Every row back to pending, to be sent again."""
    store = await open_store(db, durability="normal")
    async with store.transaction() as tx:
        await tx.execute("UPDATE outbox SET status = 'pending', attempts = 0")
    await store.close()


async def gateway_run(db: Path, email: EmailSettings) -> tuple[Took, float, list[bytes]]:
    """The rows sent by the service's own outbox worker and email transport."""
    await reset(db)
    async with kit.gateway(db, email, db.parent / "templates", durability="normal") as gw:
        watch = Stopwatch()
        await gw.send_all()
        elapsed = watch.stop()
        # The same bytes again, for the baseline (rendered outside any timing).
        rows = await gw.rows("SELECT * FROM outbox ORDER BY id")
        render_began = time.perf_counter()
        raws = [gw.transport.render(item_from_row(r), r["address"]) for r in rows]
        render_s = time.perf_counter() - render_began
    assert all(r["status"] == "sent" for r in rows)
    return elapsed, render_s, raws


class Prerendered(EmailTransport):
    """The transport with composition already done: isolates the outbox and SMTP pool."""

    def __init__(self, email: EmailSettings, raws: dict[str, bytes]) -> None:
        super().__init__(email)
        self.raws = raws

    def render(self, item: OutboxItem, address: str, subject: str | None = None) -> bytes:
        return self.raws[address]


async def plumbing_run(db: Path, email: EmailSettings, raws: list[bytes]) -> Took:
    """Send every row again (reset to pending) through the worker with pre-built bytes."""
    await reset(db)
    store = await open_store(db, durability="normal")
    by_address = {f"person{n}@example.net": raw for n, raw in enumerate(raws, 1)}
    transport = Prerendered(email, by_address)
    # Not the service's wiring: its transport composes; this one must not (what is measured).
    worker = OutboxWorker(store, {transport.channel: transport})
    watch = Stopwatch()
    while await worker.run_once():
        pass
    elapsed = watch.stop()
    await transport.close()
    await store.close()
    return elapsed


async def baseline_run(port: int, raws: list[bytes]) -> Took:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=False, local_hostname="example.test"
    )
    await client.connect()
    watch = Stopwatch()
    for n, raw in enumerate(raws, 1):
        await client.sendmail(GATEWAY, [f"person{n}@example.net"], raw)
    elapsed = watch.stop()
    await client.quit()
    return elapsed


async def main(count: int, connections: int, rounds: int) -> dict[str, object]:
    runs: dict[str, list[Took]] = {"gateway": [], "plumbing": [], "baseline": []}
    renders: list[float] = []
    async with SmtpSink() as sink:
        email = kit.settings(GATEWAY, smtp_port=sink.port, max_connections=connections)
        with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
            db = Path(d) / "bench.db"
            await queue(db, count, email)
            for _ in range(rounds):
                took, render_s, raws = await gateway_run(db, email)
                runs["gateway"].append(took)
                renders.append(render_s)
                runs["plumbing"].append(await plumbing_run(db, email, raws))
                runs["baseline"].append(await baseline_run(sink.port, raws))
                assert len(sink.messages) == 3 * count
                sink.messages.clear()
    wall = {k: statistics.median(t.wall for t in v) for k, v in runs.items()}
    cpu = {k: statistics.median(t.cpu for t in v) for k, v in runs.items()}
    per_round = zip(runs["baseline"], runs["gateway"], strict=True)
    return {
        "messages": count,
        "smtp_connections": connections,
        "rounds": rounds,
        "ratio_per_round": [round(b.wall / g.wall, 3) for b, g in per_round],
        "gateway_msgs_per_s": round(count / wall["gateway"], 1),
        "baseline_msgs_per_s": round(count / wall["baseline"], 1),
        "ratio": round(wall["baseline"] / wall["gateway"], 3),
        "without_compose_msgs_per_s": round(count / wall["plumbing"], 1),
        "without_compose_ratio": round(wall["baseline"] / wall["plumbing"], 3),
        "cpu_ratio": round(cpu["baseline"] / cpu["gateway"], 3),
        "cpu_ratio_without_compose": round(cpu["baseline"] / cpu["plumbing"], 3),
        "compose_ms_per_message": round(statistics.median(renders) / count * 1000, 2),
        "mean_message_bytes": round(sum(map(len, raws)) / len(raws)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.count, args.connections, args.rounds)), indent=2))

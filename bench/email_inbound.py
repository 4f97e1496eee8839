"""Replies delivered over LMTP into Dovecot until their answer is stored by the gateway.

    python -m bench.email_inbound [--count 30]

Latency runs from the end of the LMTP delivery to the engine's commit of the reply (the
inbox row, the flow state and the answer in the outbox). Dovecot tells IDLE clients about
new mail about 0.5 s after delivery (a fixed NOTIFY_DELAY_MSECS), so three figures are
reported: with IDLE, with NOOP polling every 20 ms (the gateway's own processing cost plus
at most one poll interval), and the bare IDLE push delay measured with a plain client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aioimaplib import aioimaplib

from gateway.model import InboundMessage
from tests.kit import email as kit
from tests.servers import DovecotServer, SmtpSink


class Timed:
    """Wraps the engine to stamp the moment each mail's transaction committed."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.committed: dict[str, float] = {}

    async def handle(self, message: InboundMessage, *, cursor: Any = None) -> Any:
        result = await self.engine.handle(message, cursor=cursor)
        self.committed[message.external_id] = time.perf_counter()
        return result

    async def enqueue_alert(self, template: str, context: Any, key: str) -> Any:
        return await self.engine.enqueue_alert(template, context, key)


def reply(n: int, to: str) -> bytes:
    return (
        f"From: p{n}@example.net\r\nTo: {to}\r\nSubject: Re: Camp 2027\r\n"
        f"Message-ID: <bench-{n}@example.net>\r\n\r\n1. Person {n}\r\n2. Soup\r\n"
    ).encode()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 1),
        "n": len(ordered),
    }


async def gateway_latency(dovecot: DovecotServer, count: int, idle: bool) -> dict[str, float]:
    box = dovecot.new_user("gw")
    async with SmtpSink() as sink:
        # With IDLE, poll_seconds only renews the IDLE; keep it long so it cannot help.
        email = kit.settings(
            box.address,
            smtp_port=sink.port,
            idle=idle,
            poll_seconds=60 if idle else 0.02,
            imap=(dovecot.imap_port, box.password),
        )
        with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
            async with kit.gateway(Path(d) / "gw.db", email, Path(d) / "t") as gw:
                timed = Timed(gw.engine)
                gw.intake.engine = timed
                stop = asyncio.Event()
                reader = gw.reader()
                task = asyncio.create_task(reader.run(stop))
                await reader.ready.wait()
                samples = []
                for n in range(count):
                    await dovecot.adeliver(box.address, reply(n, box.address))
                    delivered = time.perf_counter()
                    key = f"<bench-{n}@example.net>"
                    while key not in timed.committed:  # noqa: ASYNC110 - 1 ms resolution
                        await asyncio.sleep(0.001)
                    samples.append(timed.committed[key] - delivered)
                stop.set()
                await task
                assert len(await gw.rows("SELECT 1 FROM outbox")) == count
    return percentiles(samples)


async def idle_push_delay(dovecot: DovecotServer, count: int) -> dict[str, float]:
    box = dovecot.new_user("push")
    imap = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.imap_port, timeout=10)
    await imap.wait_hello_from_server()
    await imap.login(box.address, box.password)
    await imap.select("INBOX")
    samples = []
    for n in range(count):
        idle = await imap.idle_start(timeout=30)
        await dovecot.adeliver(box.address, reply(n, box.address))
        delivered = time.perf_counter()
        await imap.wait_server_push(timeout=10)
        samples.append(time.perf_counter() - delivered)
        imap.idle_done()
        await asyncio.wait_for(idle, 10)
    await imap.logout()
    return percentiles(samples)


async def main(count: int) -> dict[str, Any]:
    with DovecotServer() as dovecot:
        return {
            "delivery_to_stored_with_idle": await gateway_latency(dovecot, count, idle=True),
            "delivery_to_stored_with_noop_polling_20ms": await gateway_latency(
                dovecot, count, idle=False
            ),
            "dovecot_idle_push_delay_alone": await idle_push_delay(dovecot, count),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30)
    print(json.dumps(asyncio.run(main(parser.parse_args().count)), indent=2))

"""A participant's message to the bot until the bot's answer arrives in the participant's sync.

    python -m bench.matrix_roundtrip [--count 200]

Both figures come from the same Synapse on loopback (tmpfs) in the same run:

* gateway: participant sends → bot's sync → engine transaction → outbox → bot sends →
  participant's sync shows the answer (an echo flow, so flow logic costs nothing);
* baseline: one client sends, another client's sync shows it (one homeserver hop).

The gateway path has two homeserver hops, so a ratio of about 2 is the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse, SyncResponse

from tests.matrix.kit import running_bot, settings_for
from tests.servers import MatrixUser, SynapseServer


def client(server: SynapseServer, user: MatrixUser) -> AsyncClient:
    c = AsyncClient(server.url, user.user_id,
                    config=AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0))
    c.restore_login(user.user_id, user.device_id, user.access_token)
    return c


async def wait_body(c: AsyncClient, sender: str, body: str) -> None:
    while True:
        resp = await c.sync(timeout=30_000)
        assert isinstance(resp, SyncResponse), resp
        for info in resp.rooms.join.values():
            for event in info.timeline.events:
                src = event.source
                if src.get("sender") == sender and src.get("content", {}).get("body") == body:
                    return


async def wait_joined(c: AsyncClient, room: str, user_id: str) -> None:
    while room not in c.rooms or user_id not in c.rooms[room].users:
        await c.sync(timeout=1000)


def figures(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


async def gateway_round_trips(server: SynapseServer, count: int, tmp: Path) -> list[float]:
    bot_user, maya = server.new_user("bot"), server.new_user("maya")
    c = client(server, maya)
    try:
        async with running_bot(tmp, settings_for(server, bot_user, tmp / "mx")):
            room = await c.room_create(is_direct=True, invite=[bot_user.user_id])
            assert isinstance(room, RoomCreateResponse), room
            await c.sync(timeout=0)
            await wait_joined(c, room.room_id, bot_user.user_id)
            samples = []
            for i in range(count + 5):
                began = time.perf_counter()
                await c.room_send(room.room_id, "m.room.message",
                                  {"msgtype": "m.text", "body": f"m{i}"})
                await wait_body(c, bot_user.user_id, f"echo: m{i}")
                if i >= 5:  # warm-up: first DM room lookups, connection set-up
                    samples.append(time.perf_counter() - began)
            return samples
    finally:
        await c.close()


async def baseline_round_trips(server: SynapseServer, count: int) -> list[float]:
    a_user, b_user = server.new_user("ana"), server.new_user("ben")
    a, b = client(server, a_user), client(server, b_user)
    try:
        room = await a.room_create(invite=[b_user.user_id])
        assert isinstance(room, RoomCreateResponse), room
        await b.sync(timeout=0)
        await b.join(room.room_id)
        await a.sync(timeout=0)
        await b.sync(timeout=0)
        samples = []
        for i in range(count + 5):
            began = time.perf_counter()
            await a.room_send(room.room_id, "m.room.message",
                              {"msgtype": "m.text", "body": f"b{i}"})
            await wait_body(b, a_user.user_id, f"b{i}")
            if i >= 5:
                samples.append(time.perf_counter() - began)
        return samples
    finally:
        await a.close()
        await b.close()


async def main(count: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with SynapseServer() as server, tempfile.TemporaryDirectory() as tmp:
        base = await baseline_round_trips(server, count)
        gateway = await gateway_round_trips(server, count, Path(tmp))
    b50, b95 = figures(base)
    g50, g95 = figures(gateway)
    print(f"messages: {count} each, Synapse on loopback")
    print(f"baseline (client → homeserver → client):    p50 {b50 * 1000:6.1f} ms"
          f"  p95 {b95 * 1000:6.1f} ms")
    print(f"gateway  (participant → bot → participant): p50 {g50 * 1000:6.1f} ms"
          f"  p95 {g95 * 1000:6.1f} ms")
    print(f"ratio gateway/baseline:                      p50 {g50 / b50:6.2f}"
          f"     p95 {g95 / b95:6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    asyncio.run(main(parser.parse_args().count))

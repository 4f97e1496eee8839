"""A participant's message to the bot until the bot's answer arrives in the participant's sync.

    python -m bench.matrix_roundtrip [--count 200] [--store-dir DIR]

Both figures come from the same Synapse on loopback (tmpfs) in the same run:

* gateway: participant sends → bot's sync → engine transaction → outbox → bot sends →
  participant's sync shows the answer (an echo flow, so flow logic costs nothing);
* baseline: one client sends, another client's sync shows it (one homeserver hop);
* bare bot: the gateway's path with a bot that is a nio sync loop answering from memory, no
  store, engine or outbox: the two-hop floor as this machine runs it.

The three kinds take turns message by message: on a shared machine the load changes within a
minute, and measuring all of one kind before the others would charge that change to one of
them. The gateway's database is on tmpfs like Synapse's, so both sides pay the same for a
commit; `--store-dir` puts it elsewhere (a disk: each commit waits for fsync).

The gateway path has two homeserver hops, so a ratio of about 2 is the floor; what the
gateway costs of its own is the difference to the bare bot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse, SyncResponse

from tests.kit.matrix import running_bot, settings_for
from tests.servers import MatrixUser, SynapseServer

WARM_UP = 5  # first DM room lookups, connection set-up
TMPFS = "/dev/shm" if Path("/dev/shm").is_dir() else None


def client(server: SynapseServer, user: MatrixUser) -> AsyncClient:
    c = AsyncClient(
        server.url, user.user_id, config=AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0)
    )
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


class Pair:
    """A sender, the client whose sync must show the answer, and the room between them."""

    def __init__(
        self, sender: AsyncClient, reader: AsyncClient, room: str, answerer: str, prefix: str
    ) -> None:
        self.sender, self.reader, self.room = sender, reader, room
        self.answerer, self.prefix = answerer, prefix

    async def round_trip(self, i: int) -> float:
        began = time.perf_counter()
        await self.sender.room_send(
            self.room, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"}
        )
        await wait_body(self.reader, self.answerer, f"{self.prefix}m{i}")
        return time.perf_counter() - began


@contextlib.asynccontextmanager
async def gateway_pair(server: SynapseServer, store: Path) -> AsyncIterator[Pair]:
    bot_user, maya = server.new_user("bot"), server.new_user("maya")
    c = client(server, maya)
    try:
        async with running_bot(store, settings_for(server, bot_user, store / "mx")):
            room = await c.room_create(is_direct=True, invite=[bot_user.user_id])
            assert isinstance(room, RoomCreateResponse), room
            await c.sync(timeout=0)
            await wait_joined(c, room.room_id, bot_user.user_id)
            yield Pair(c, c, room.room_id, bot_user.user_id, "echo: ")
    finally:
        await c.close()


@contextlib.asynccontextmanager
async def baseline_pair(server: SynapseServer) -> AsyncIterator[Pair]:
    a_user, b_user = server.new_user("ana"), server.new_user("ben")
    a, b = client(server, a_user), client(server, b_user)
    try:
        room = await a.room_create(invite=[b_user.user_id])
        assert isinstance(room, RoomCreateResponse), room
        await b.sync(timeout=0)
        await b.join(room.room_id)
        await a.sync(timeout=0)
        await b.sync(timeout=0)
        yield Pair(a, b, room.room_id, a_user.user_id, "")
    finally:
        await a.close()
        await b.close()


@contextlib.asynccontextmanager
async def bare_bot_pair(server: SynapseServer) -> AsyncIterator[Pair]:
    bot_user, zoe = server.new_user("bare"), server.new_user("zoe")
    bot, c = client(server, bot_user), client(server, zoe)
    try:
        room = await c.room_create(is_direct=True, invite=[bot_user.user_id])
        assert isinstance(room, RoomCreateResponse), room
        await bot.sync(timeout=0)
        await bot.join(room.room_id)
        await c.sync(timeout=0)
        await wait_joined(c, room.room_id, bot_user.user_id)
        first = await bot.sync(timeout=0)
        assert isinstance(first, SyncResponse), first
        answering = asyncio.create_task(echo_forever(bot, first.next_batch))
        try:
            yield Pair(c, c, room.room_id, bot_user.user_id, "echo: ")
        finally:
            answering.cancel()
    finally:
        await bot.close()
        await c.close()


async def echo_forever(bot: AsyncClient, since: str) -> None:
    """Answer every text from someone else at once, straight from the sync loop."""
    while True:
        resp = await bot.sync(
            timeout=30_000, since=since, sync_filter={"room": {"timeline": {"limit": 50}}}
        )
        assert isinstance(resp, SyncResponse), resp
        since = resp.next_batch
        for room_id, info in resp.rooms.join.items():
            for event in info.timeline.events:
                src = event.source
                if src.get("sender") != bot.user_id and src.get("type") == "m.room.message":
                    await bot.room_send(
                        room_id,
                        "m.room.message",
                        {"msgtype": "m.text", "body": f"echo: {src['content']['body']}"},
                    )


async def main(count: int, store_dir: str | None) -> None:
    logging.basicConfig(level=logging.WARNING)
    store_base = store_dir or TMPFS
    samples: dict[str, list[float]] = {"baseline": [], "bare bot": [], "gateway": []}
    with SynapseServer() as server, tempfile.TemporaryDirectory(dir=store_base) as tmp:
        async with (
            baseline_pair(server) as plain,
            bare_bot_pair(server) as bare,
            gateway_pair(server, Path(tmp)) as bot,
        ):
            pairs = {"baseline": plain, "bare bot": bare, "gateway": bot}
            for i in range(count + WARM_UP):
                for name, pair in pairs.items():
                    took = await pair.round_trip(i)
                    if i >= WARM_UP:
                        samples[name].append(took)
    b50, b95 = figures(samples["baseline"])
    print(
        f"messages: {count} each, taking turns, Synapse on loopback;"
        f" gateway store in {store_base or tempfile.gettempdir()}"
    )
    for name, what in (
        ("baseline", "client → homeserver → client"),
        ("bare bot", "participant → nio echo loop → participant"),
        ("gateway", "participant → gateway → participant"),
    ):
        p50, p95 = figures(samples[name])
        print(
            f"{name:8} ({what + '):':44} p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms"
            f"  ratio p50 {p50 / b50:4.2f}  p95 {p95 / b95:4.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--store-dir", help="where the gateway's database goes (default: tmpfs)")
    args = parser.parse_args()
    asyncio.run(main(args.count, args.store_dir))

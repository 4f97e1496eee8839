"""Group commit: concurrent messages share transactions, yet each stands or falls alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.core.committer import GroupCommitter
from gateway.model import InboundMessage
from gateway.ports import EngineStopped
from gateway.store import open_store
from gateway.store.db import Tx
from tests.kit.engine import text


async def test_concurrent_callers_share_commits_and_a_poison_message_fails_alone(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path / "g.sqlite3")
    await store.conn.execute("CREATE TABLE seen (body TEXT)")
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)

    async def process(tx: Tx, message: InboundMessage) -> str:
        await tx.execute("INSERT INTO seen (body) VALUES (?)", (message.text,))
        if message.text == "poison":
            raise RuntimeError("bad message")
        return message.text

    async def no_cursor(tx: Tx, name: str, value: str) -> None:
        raise AssertionError("no cursor was given")

    committer: GroupCommitter[str] = GroupCommitter(store, process, no_cursor)
    bodies = [f"m{n}" for n in range(20)] + ["poison"]
    results = await asyncio.gather(
        *(committer.submit([text("a@example.test", b)], None) for b in bodies),
        return_exceptions=True,
    )
    assert results[:20] == [[f"m{n}"] for n in range(20)]
    assert isinstance(results[20], RuntimeError)
    async with store.read() as tx:
        stored = sorted(r[0] for r in await tx.all("SELECT body FROM seen"))
    assert stored == sorted(f"m{n}" for n in range(20))  # the poison message left nothing
    # 21 messages: far fewer commits than messages, even with the group retried one by one.
    commits = statements.count("COMMIT")
    assert 0 < commits < 21
    await store.close()


async def test_a_cancelled_leader_fails_the_waiting_callers_instead_of_hanging(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path / "g.sqlite3")
    started = asyncio.Event()

    async def slow(tx: Tx, message: InboundMessage) -> str:
        started.set()
        await asyncio.sleep(10)
        return message.text

    async def no_cursor(tx: Tx, name: str, value: str) -> None:
        return None

    committer: GroupCommitter[str] = GroupCommitter(store, slow, no_cursor)
    leader = asyncio.create_task(committer.submit([text("a@example.test", "one")], None))
    await started.wait()
    follower = asyncio.create_task(committer.submit([text("b@example.test", "two")], None))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(EngineStopped):
        await follower
    await store.close()


async def test_a_deferred_write_that_fails_sets_aside_only_its_own_message(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path / "g.sqlite3")
    await store.conn.execute("CREATE TABLE seen (body TEXT UNIQUE)")

    async def process(tx: Tx, message: InboundMessage) -> str:
        tx.defer("INSERT INTO seen (body) VALUES (?)", (message.text,))
        if message.text == "poison":
            # Its failure shows only when the deferred writes run, after `process` returned.
            tx.defer("INSERT INTO seen (body) VALUES (?)", (message.text,))
        return message.text

    async def failed(tx: Tx, message: InboundMessage, exc: Exception) -> str:
        tx.defer("INSERT INTO seen (body) VALUES (?)", (f"failed {message.text}",))
        return "failed"

    async def save_cursor(tx: Tx, name: str, value: str) -> None:
        tx.defer("INSERT INTO seen (body) VALUES (?)", (f"cursor {value}",))

    committer: GroupCommitter[str] = GroupCommitter(store, process, save_cursor, on_failure=failed)
    batch = [text("a@example.test", b) for b in ("one", "poison", "two")]
    assert await committer.submit(batch, ("sync", "7")) == ["one", "failed", "two"]
    async with store.read() as tx:
        stored = sorted(r[0] for r in await tx.all("SELECT body FROM seen"))
    assert stored == ["cursor 7", "failed poison", "one", "two"]
    await store.close()

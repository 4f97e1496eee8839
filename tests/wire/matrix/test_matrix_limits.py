"""Synapse's default rate limits: a broadcast to 30 people completes, each message once,
with the outbox waiting as long as `retry_after_ms` asks."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import pytest
from nio import RoomCreateResponse, RoomPreset

import gateway.core.outbox
from gateway.core.people import create_person
from gateway.model import Channel, Identity
from gateway.ports import TransientError
from gateway.store.db import now_iso
from tests.kit.matrix import room_history, running_bot, settings_for
from tests.servers import SynapseServer
from tests.wire.matrix.test_matrix_transport import item


async def test_broadcast_to_30_under_default_rate_limits(
    synapse_rate_limited: SynapseServer,
    matrix_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hs = synapse_rate_limited
    admin, bot_user = hs.new_user("admin", admin=True), hs.new_user("bot")
    people = [hs.new_user("p") for _ in range(30)]
    rooms: dict[str, str] = {}
    for person in people:
        # Each person opens a public room; the admin API joins the bot without join limits,
        # so the only limit the bot meets is the one under test: rc_message.
        client = await matrix_client(person, hs)
        created = await client.room_create(preset=RoomPreset.public_chat)
        assert isinstance(created, RoomCreateResponse), created
        hs.request(
            "POST",
            f"/_synapse/admin/v1/join/{created.room_id}",
            {"user_id": bot_user.user_id},
            token=admin.access_token,
        )
        rooms[person.user_id] = created.room_id
    # Small own backoff, so the wait is the server's retry_after_ms rather than ours.
    monkeypatch.setattr(
        gateway.core.outbox,
        "backoff",
        functools.partial(gateway.core.outbox.backoff, base=0.05, cap=1.0),
    )
    settings = settings_for(hs, bot_user, tmp_path / "mx")
    async with running_bot(tmp_path, settings) as bot:
        for person in people:
            await bot.transport.rooms.remember("direct", person.user_id, rooms[person.user_id])
        limited = []
        for n in range(12):  # past the burst: the transport reports the limit, with its delay
            try:
                await bot.transport.send(item(f"probe{n}", people[0].user_id, f"probe {n}"))
            except TransientError as exc:
                limited.append(exc.retry_after)
                break
        assert limited and limited[0] is not None and limited[0] > 0
        async with bot.store.transaction() as tx:
            for i, person in enumerate(people):
                pid = await create_person(tx, Identity.matrix(person.user_id), language="en")
                await tx.execute(
                    "INSERT INTO outbox (idempotency_key, person_id, channel, address, kind,"
                    " payload, next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'text', ?, ?, ?)",
                    (
                        f"broadcast#{i}",
                        pid,
                        Channel.MATRIX.value,
                        person.user_id,
                        '{"text": "Dinner is at seven"}',
                        now_iso(),
                        now_iso(),
                    ),
                )
        bot.outbox.wake()
        for _ in range(400):  # each round waits for the worker: bounded, not timed
            async with bot.store.read() as tx:
                row = await tx.one(
                    "SELECT COUNT(*) FROM outbox WHERE idempotency_key LIKE"
                    " 'broadcast#%' AND status != 'sent'"
                )
            if row is not None and row[0] == 0:
                break
            await _idle(bot.outbox)
        async with bot.store.read() as tx:
            rows = await tx.all(
                "SELECT status, attempts FROM outbox WHERE idempotency_key LIKE 'broadcast#%'"
            )
    assert [r["status"] for r in rows] == ["sent"] * 30
    assert max(r["attempts"] for r in rows) > 1  # the limit was really in the way
    for person in people:
        history = await room_history(
            await matrix_client(person, hs), rooms[person.user_id], bot_user.user_id
        )
        bodies = [e["content"]["body"] for e in history if e["type"] == "m.room.message"]
        assert bodies.count("Dinner is at seven") == 1


async def _idle(worker: Any) -> None:
    await asyncio.sleep(max(0.2, await worker.seconds_until_due(idle=1.0)))

"""Identity linking through the real engine: a person links a second address, or is told
why not when the address already belongs to someone else."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from gateway.app.registry import default_flows
from gateway.core.engine import Engine
from gateway.core.unsolicited import over_limit
from gateway.model import Channel
from gateway.store import Store, open_store
from tests.kit.engine import gathering, text


async def setup(tmp_path: Path) -> tuple[Engine, Store]:
    store = await open_store(tmp_path / "g.sqlite3")
    return Engine(store, default_flows(), {"camp": gathering()}), store


async def last_to(store: Store, address: str) -> str:
    async with store.read() as tx:
        row = await tx.one(
            "SELECT payload FROM outbox WHERE address = ? ORDER BY id DESC LIMIT 1", (address,)
        )
    assert row is not None, f"nothing was sent to {address}"
    return str(json.loads(row[0])["text"])


async def identities(store: Store) -> list[tuple[int, str]]:
    async with store.read() as tx:
        rows = await tx.all("SELECT person_id, address FROM identities ORDER BY id")
    return [(r[0], r[1]) for r in rows]


async def test_a_matrix_participant_links_their_email_with_the_mailed_code(tmp_path: Path) -> None:
    engine, store = await setup(tmp_path)
    await engine.handle(text("@maya:hs", "hello", channel=Channel.MATRIX))
    await engine.handle(text("@maya:hs", "link email maya@example.org", channel=Channel.MATRIX))
    code = re.search(r"\b(\d{6})\b", await last_to(store, "maya@example.org"))
    assert code is not None
    await engine.handle(text("@maya:hs", code.group(1), channel=Channel.MATRIX))
    assert await identities(store) == [(1, "@maya:hs"), (1, "maya@example.org")]
    await store.close()


async def test_an_address_of_someone_else_is_not_linked_and_the_person_is_told(
    tmp_path: Path,
) -> None:
    engine, store = await setup(tmp_path)
    await engine.handle(text("bo@example.org", "hello"))  # person 1 owns this address
    await engine.handle(text("@maya:hs", "hello", channel=Channel.MATRIX))
    await engine.handle(text("@maya:hs", "link email bo@example.org", channel=Channel.MATRIX))
    code = re.search(r"\b(\d{6})\b", await last_to(store, "bo@example.org"))
    assert code is not None
    await engine.handle(text("@maya:hs", code.group(1), channel=Channel.MATRIX))
    assert await identities(store) == [(1, "bo@example.org"), (2, "@maya:hs")]
    assert "already belongs to another participant" in await last_to(store, "@maya:hs")
    await store.close()


async def test_link_codes_to_one_unproven_address_are_limited_per_day(tmp_path: Path) -> None:
    """`link email` to a third party's address cannot make the gateway mail them without end;
    once an address proved itself (its code came back) it is never limited."""
    store = await open_store(tmp_path / "g.sqlite3")
    engine = Engine(store, default_flows(), {"camp": gathering()}, unproven_daily_limit=2)
    await engine.handle(text("@mallory:hs", "hello", channel=Channel.MATRIX))
    for _ in range(4):
        await engine.handle(
            text("@mallory:hs", "link email victim@example.org", channel=Channel.MATRIX)
        )
    async with store.read() as tx:
        sent = await tx.all("SELECT 1 FROM outbox WHERE address = 'victim@example.org'")
        notes = await tx.all("SELECT person_id, summary FROM audit WHERE direction = 'note'")
    assert len(sent) == 2
    assert [(r[0], r[1]) for r in notes] == [
        (1, "not sent (2 a day to an unproven address): linking/code")
    ] * 2
    # Maya's own address proves itself by the code, and is then mailed without a limit.
    await engine.handle(text("@maya:hs", "hello", channel=Channel.MATRIX))
    await engine.handle(text("@maya:hs", "link email maya@example.org", channel=Channel.MATRIX))
    code = re.search(r"\b(\d{6})\b", await last_to(store, "maya@example.org"))
    assert code is not None
    await engine.handle(text("@maya:hs", code.group(1), channel=Channel.MATRIX))
    now = datetime.now(UTC)
    async with store.read() as tx:
        assert await over_limit(tx, Channel.EMAIL, "victim@example.org", 2, now)
        assert not await over_limit(tx, Channel.EMAIL, "maya@example.org", 1, now)
    await store.close()

"""`gateway forget` also erases what the Matrix transport keeps about a person."""

from __future__ import annotations

from pathlib import Path

from gateway.channels.matrix.transport import MIGRATIONS
from gateway.core.people import create_person
from gateway.model import Identity, IdentityKind
from gateway.ops.reports import forget_person
from gateway.store.db import open_store


async def test_forget_clears_rooms_and_held_events(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.sqlite3", migrations=MIGRATIONS)
    try:
        async with store.transaction() as tx:
            ana = await create_person(tx, Identity(IdentityKind.MATRIX, "@ana:hs"), language="en")
            for kind, key, members in (
                ("direct", "@ana:hs", "[]"),
                ("direct", "@bo:hs", "[]"),
                ("group", "camp/crew-1", '["@ana:hs", "@bo:hs"]'),
            ):
                await tx.execute(
                    "INSERT INTO matrix_rooms (kind, key, room_id, members, created_at)"
                    " VALUES (?, ?, ?, ?, '2026-01-01')",
                    (kind, key, f"!{key}", members),
                )
            for n, sender in enumerate(("@ana:hs", "@bo:hs")):
                await tx.execute(
                    "INSERT INTO matrix_pending (event_id, room_id, sender, encrypted, source,"
                    " held_at, deadline) VALUES (?, '!r', ?, 1, '{}', '2026-01-01', 0)",
                    (f"$e{n}", sender),
                )
        touched = await forget_person(store, ana)
        assert touched["matrix_rooms"] == 3  # direct room, group membership, held event
        async with store.read() as tx:
            rooms = [tuple(r) for r in await tx.all("SELECT key, members FROM matrix_rooms")]
            held = [r[0] for r in await tx.all("SELECT sender FROM matrix_pending")]
        assert sorted(rooms) == [("@bo:hs", "[]"), ("camp/crew-1", '["@bo:hs"]')]
        assert held == ["@bo:hs"]
    finally:
        await store.close()

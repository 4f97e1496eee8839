"""`gateway forget`: each part erases what it keeps (core tables, channel hooks)."""

from __future__ import annotations

from pathlib import Path

from gateway.channels.matrix.rooms import forget_identities
from gateway.channels.matrix.transport import MIGRATIONS
from gateway.core.people import create_person
from gateway.model import Identity, IdentityKind
from gateway.ops.privacy import forget_person
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
        touched = await forget_person(store, ana, [forget_identities])
        assert touched["channels"] == 3  # direct room, group membership, held event
        async with store.read() as tx:
            rooms = [tuple(r) for r in await tx.all("SELECT key, members FROM matrix_rooms")]
            held = [r[0] for r in await tx.all("SELECT sender FROM matrix_pending")]
        assert sorted(rooms) == [("@bo:hs", "[]"), ("camp/crew-1", '["@bo:hs"]')]
        assert held == ["@bo:hs"]
    finally:
        await store.close()


async def test_forget_blanks_group_messages_and_quarantined_mail(tmp_path: Path) -> None:
    """Crew introductions (group rows, no person id) and raw mail set aside kept the
    person's address and name after `gateway forget`."""
    from gateway.channels.email.failures import MIGRATIONS as EMAIL_MIGRATIONS
    from gateway.channels.email.failures import forget_identities as email_forget

    path = tmp_path / "g.sqlite3"
    store = await open_store(path, migrations=[*MIGRATIONS, *EMAIL_MIGRATIONS])
    try:
        async with store.transaction() as tx:
            ana = await create_person(
                tx, Identity(IdentityKind.EMAIL, "ana@example.org", "Ana Lima"), language="en"
            )
            await tx.execute("UPDATE people SET display_name = 'Ana Lima' WHERE id = ?", (ana,))
            await tx.execute(
                "INSERT INTO outbox (idempotency_key, person_id, channel, address, kind, payload,"
                " next_attempt_at, created_at, status) VALUES ('k1', NULL, 'email',"
                " 'crew-1', 'group', ?, '2026-01-01', '2026-01-01', 'sent')",
                (
                    '{"text": "Meet Ana Lima (ana@example.org) and Bo", "group_addresses":'
                    ' ["ana@example.org", "bo@example.org"]}',
                ),
            )
            await tx.execute(
                "INSERT INTO mail_quarantine (key, place, sender, subject, attempts, reason, raw,"
                " set_aside_at) VALUES ('q1', 'INBOX', 'ana@example.org', 'Hi', 3, 'x', ?, 'now')",
                (b"From: Ana Lima <ana@example.org>\r\n\r\nhello",),
            )
        touched = await forget_person(store, ana, [forget_identities, email_forget])
        assert touched["group_messages"] >= 1 and touched["channels"] == 1
    finally:
        await store.close()
    files = tmp_path.glob("g.sqlite3*")  # noqa: ASYNC240 - the test reads the files once
    data = b"".join(p.read_bytes() for p in files).replace(b"\x00", b"")
    assert b"ana@example.org" not in data and b"Ana Lima" not in data

"""Erasing a person: every part that keeps personal data erases its own (an erase hook).

The core's tables are erased here; each channel passes a hook (`EraseHook`) for its own
tables (the Matrix room directory, the email quarantine), wired by the app; flows first
let the person go through their own steps (`leave_runs`), so seats are freed and offered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from gateway.core.engine import Engine
from gateway.model import (
    Channel,
    Identity,
    IdentityKind,
    InboundKind,
    InboundMessage,
    PersonId,
    Target,
)
from gateway.store.db import Store, Tx, now_iso

#: A part's eraser: given the person's identities and names, erase what it keeps of them.
EraseHook = Callable[[Tx, Sequence[Identity], Sequence[str]], Awaitable[int]]

#: The COMMAND a flow run gets when its person is erased (registration frees the seat).
FORGET = "forget"


class StillInLog(Exception):
    """Erased, but a reader kept SQLite's write-ahead log from being cleared: until the next
    checkpoint, the old pages (with the erased data) are still in the -wal file."""


async def leave_runs(engine: Engine, person: PersonId) -> int:
    """Let each of the person's flow runs end as a departure (before their data goes)."""
    async with engine.store.read() as tx:
        runs = await tx.all("SELECT gathering, flow FROM flow_runs WHERE person_id = ?", (person,))
    now = datetime.now(UTC)
    messages = [
        InboundMessage(
            channel=Channel.INTERNAL,
            external_id=f"{FORGET}/{person}/{r[0]}/{r[1]}/{now.isoformat()}",
            kind=InboundKind.COMMAND,
            received_at=now,
            text=FORGET,
            target=Target(r[0], r[1], person),
        )
        for r in runs
        if r[0] in engine.gatherings and r[1] in engine.flows
    ]
    await engine.handle_batch(messages)
    return len(messages)


async def forget_person(
    store: Store, person: PersonId, hooks: Sequence[EraseHook] = ()
) -> dict[str, int]:
    """Erase a person's personal data everywhere, keeping only anonymous counts.

    Identities and audit lines are deleted; flow states keep only their status; message
    texts in the inbox and outbox are blanked, group messages (crew introductions) that name
    them included; each channel erases what it keeps through its hook. Returns how many rows
    of each kind were touched, for the organiser's confirmation, and raises `StillInLog`
    when another reader kept the write-ahead log from being cleared.
    """
    if person == 0:
        raise ValueError("person 0 is the gathering itself")
    stamp = now_iso()
    async with store.transaction() as tx:
        exists = await tx.one("SELECT 1 FROM people WHERE id = ?", (person,))
        if not exists:
            raise LookupError(f"no person {person}")
        identities = [
            Identity(IdentityKind(r[0]), r[1])
            for r in await tx.all(
                "SELECT kind, address FROM identities WHERE person_id = ?", (person,)
            )
        ]
        name_row = await tx.one("SELECT display_name FROM people WHERE id = ?", (person,))
        names = [name_row[0]] if name_row and len(name_row[0] or "") >= 3 else []
        touched = {
            "channels": sum([await hook(tx, identities, names) for hook in hooks]),
            "group_messages": await _forget_in_group_messages(tx, identities, names),
            "proven_addresses": sum(
                [
                    await tx.execute(
                        "DELETE FROM proven_addresses WHERE channel = ? AND address = ?",
                        (i.kind.value, i.address.lower()),
                    )
                    for i in identities
                ]
            ),
            "identities": await tx.execute("DELETE FROM identities WHERE person_id = ?", (person,)),
            "audit": await tx.execute("DELETE FROM audit WHERE person_id = ?", (person,)),
            "flow_runs": await tx.execute(
                "UPDATE flow_runs SET state = '{}' WHERE person_id = ?", (person,)
            ),
            # Unsent messages to the person are dropped with the data they carry.
            "outbox": await tx.execute(
                "UPDATE outbox SET address = '', payload = json_object('erased', 1),"
                " status = CASE WHEN status IN ('pending', 'sending') THEN 'dead' ELSE status END,"
                " last_error = CASE WHEN status IN ('pending', 'sending') THEN 'person erased'"
                " ELSE last_error END WHERE person_id = ?",
                (person,),
            ),
            "inbox": await tx.execute(
                "UPDATE inbox SET detail = '' WHERE person_id = ?", (person,)
            ),
            "timers": await tx.execute("DELETE FROM timers WHERE person_id = ?", (person,)),
        }
        await tx.execute(
            "UPDATE people SET display_name = '', erased_at = ? WHERE id = ?", (stamp, person)
        )
    await _clear_log(store)
    return touched


async def _forget_in_group_messages(
    tx: Tx, identities: Sequence[Identity], names: Sequence[str]
) -> int:
    """Group messages (crew introductions) carry members' names, answers and addresses
    with no person id: blank those that name the person."""
    changed = 0
    for needle in [*(i.address for i in identities), *names]:
        changed += await tx.execute(
            "UPDATE outbox SET payload = json_object('erased', 1),"
            " address = CASE WHEN instr(address, ?) > 0 THEN '' ELSE address END"
            " WHERE person_id IS NULL AND (instr(payload, ?) > 0 OR instr(address, ?) > 0)",
            (needle, needle, needle),
        )
    return changed


async def _clear_log(store: Store, attempts: int = 50) -> None:
    """With secure_delete on, freed pages are zeroed; a TRUNCATE checkpoint then empties the
    WAL. It cannot while another connection reads an older snapshot: try for a few seconds,
    then say so instead of reporting success."""
    for _ in range(attempts):
        rows = await store.conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        busy = next(iter(rows))[0]
        if not busy:
            return
        await asyncio.sleep(0.1)
    raise StillInLog("another program is reading the database")

"""Encrypted events whose room key has not arrived yet: held, the key asked for, released in order.

A Megolm room key travels as a to-device message, separately from the room event it opens,
and often arrives a moment later (the sender's client was still sharing it, a to-device
backlog, a device the sender learnt about late). Rejecting at once would tell people to
repeat messages the gateway could have read a second later. So an undecryptable event is
*held*:

* it is written to `matrix_pending` before the sync position that passed it is committed
  (the transport holds events before it hands the batch and its `next_batch` to the engine),
  so a restart finds it there instead of skipping it;
* the room key is requested (`m.room_key_request`) from the sender's devices;
* every later event of the same sender in the same room waits behind it, so the engine sees
  one person's messages in the order they were sent;
* after each sync (a key that came in is in nio's store by then) and at the deadline, the
  queues are retried: what decrypts is released in order; a head still unreadable after
  `wait` seconds is released undecrypted, which the codec turns into REJECTED, so the sender
  is told to send it again.

Rows are deleted only after the engine committed the released messages; a crash in between
releases them again and the engine's inbox (unique per event id) drops the repeats.

Held events are stored as received: encrypted ones stay encrypted at rest and are decrypted
again from nio's store on release; events waiting behind them were already decrypted by nio
and are kept as plaintext until released (seconds, at most `wait`), like the answers the
gateway stores anyway.

A restart does not restart the clock, but nothing expires before the first sync after it has
been applied: keys sent while the gateway was down are waiting on the homeserver and come in
with that sync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nio import AsyncClient, MegolmEvent

from gateway.store.db import Store, now_iso
from gateway.store.migrations import Migration

log = logging.getLogger(__name__)

#: How long an event waits for its room key. Keys that are merely late arrive within seconds;
#: a minute also leaves the sender's client time to answer the key request. After that the
#: person is better served by "please send it again" than by more waiting.
KEY_WAIT = 60.0

MEGOLM = "m.megolm.v1.aes-sha2"

MIGRATIONS: list[Migration] = [
    Migration(
        "matrix_pending",
        1,
        "encrypted events waiting for their room key, and the events queued behind them",
        """
        CREATE TABLE matrix_pending (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            encrypted INTEGER NOT NULL,
            source TEXT NOT NULL,
            held_at TEXT NOT NULL,
            deadline REAL NOT NULL
        );
        CREATE INDEX matrix_pending_queue ON matrix_pending(room_id, sender, id);
        """,
    ),
]


@dataclass(frozen=True, slots=True)
class Held:
    """One held event: `source` is the event as received (encrypted if `encrypted`)."""

    id: int
    event_id: str
    room_id: str
    sender: str
    encrypted: bool
    source: dict[str, Any]
    deadline: float


@dataclass(frozen=True, slots=True)
class Plain:
    """A held event that was readable: what the transport's `_inbound` reads is `source`."""

    source: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Released:
    held: Held
    #: A decrypted nio event, a `Plain` one, or the `MegolmEvent` itself once it expired.
    event: Any


Queue = tuple[str, str]  # (room id, sender)


class PendingDecryption:
    """The held events of one bot, by (room, sender), mirrored in `matrix_pending`.

    Callers hold `lock` around hold → release → engine → done, so a queue is never released
    twice at once and a new event cannot overtake the queue it belongs behind.
    """

    def __init__(
        self,
        client: AsyncClient,
        store: Store,
        *,
        wait: float = KEY_WAIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.store, self.wait, self.clock = client, store, wait, clock
        self.lock = asyncio.Lock()
        self.queues: dict[Queue, list[Held]] = {}
        self._loaded = False
        self._synced = False  # a sync was applied since start: deadlines may now pass
        self._changed = asyncio.Event()
        self._requested: set[str] = set()

    async def load(self) -> None:
        """Read what a previous run left pending (once)."""
        if self._loaded:
            return
        accept_forwards_from_session_owner(self.client)
        async with self.store.read() as tx:
            rows = await tx.all("SELECT * FROM matrix_pending ORDER BY id")
        for row in rows:
            held = Held(
                row["id"],
                row["event_id"],
                row["room_id"],
                row["sender"],
                bool(row["encrypted"]),
                json.loads(row["source"]),
                row["deadline"],
            )
            self.queues.setdefault((held.room_id, held.sender), []).append(held)
        self._loaded = True
        if rows:
            log.info("%d Matrix events still wait for room keys", len(rows))
            self._changed.set()

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    async def hold(self, room_id: str, event: Any) -> bool:
        """Keep `event` back if it cannot be read yet or its sender has a queue in the room."""
        source = getattr(event, "source", None)
        if not isinstance(source, dict):
            return False
        sender, event_id = source.get("sender"), source.get("event_id")
        if not isinstance(sender, str) or not isinstance(event_id, str):
            return False
        undecryptable = isinstance(event, MegolmEvent)
        queue = self.queues.get((room_id, sender))
        if sender == self.client.user_id or (not undecryptable and not queue):
            return False
        if queue and any(h.event_id == event_id for h in queue):
            return True  # the same sync again, after a failure: already held
        deadline = self.clock() + self.wait
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO matrix_pending (event_id, room_id, sender, encrypted, source,"
                " held_at, deadline) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (event_id, room_id, sender, undecryptable, json.dumps(source), now_iso(), deadline),
            )
            row = await tx.one(
                "SELECT id, deadline FROM matrix_pending WHERE event_id = ?", (event_id,)
            )
        assert row is not None
        held = Held(row["id"], event_id, room_id, sender, undecryptable, source, row["deadline"])
        self.queues.setdefault((room_id, sender), []).append(held)
        if undecryptable:
            log.info(
                "holding %s from %s in %s until its room key arrives", event_id, sender, room_id
            )
            self._request_key(event)
        self._changed.set()
        return True

    def _request_key(self, event: MegolmEvent) -> None:
        """Queue an `m.room_key_request` to the sender's devices (sent with the next to-device
        batch; once sent, nio remembers it, so a forwarded answer is recognised)."""
        olm = self.client.olm
        session = event.session_id
        if (
            olm is None
            or not session
            or session in self._requested
            or session in olm.outgoing_key_requests
        ):
            return
        self._requested.add(session)
        olm.outgoing_to_device_messages.append(
            event.as_key_request(event.sender, self.client.device_id, session)
        )

    async def send_requests(self) -> None:
        """Send queued key requests now rather than with the next sync's housekeeping."""
        if self.client.olm is not None and self.client.olm.outgoing_to_device_messages:
            try:
                await self.client.send_to_device_messages()
            except Exception as exc:  # they stay queued; housekeeping sends them next sync
                log.warning("could not send room key requests yet: %r", exc)

    def synced(self) -> None:
        """A sync was applied: keys that were on their way are in nio's store now."""
        self._synced = True
        self._changed.set()

    def releasable(self) -> list[Released]:
        """Every queue's readable (or expired) head events, in order; nothing is removed
        until `done`, so a failure on the way to the engine loses nothing."""
        out: list[Released] = []
        now = self.clock()
        for queue in self.queues.values():
            for held in queue:
                event = self._readable(held)
                if event is None:
                    if not self._synced or held.deadline > now:
                        break
                    log.warning(
                        "no room key for %s from %s within %.0fs: rejecting it",
                        held.event_id,
                        held.sender,
                        self.wait,
                    )
                    event = self._megolm(held)
                out.append(Released(held, event))
        return out

    async def done(self, released: list[Released]) -> None:
        """The engine committed these: forget them."""
        if not released:
            return
        async with self.store.transaction() as tx:
            await tx.executemany(
                "DELETE FROM matrix_pending WHERE id = ?", [(r.held.id,) for r in released]
            )
        gone = {r.held.id for r in released}
        for key in list(self.queues):
            left = [h for h in self.queues[key] if h.id not in gone]
            if left:
                self.queues[key] = left
            else:
                del self.queues[key]

    def next_deadline(self) -> float | None:
        """When the earliest waiting head expires (None: nothing waits, or not synced yet)."""
        heads = [q[0].deadline for q in self.queues.values() if q and q[0].encrypted]
        return min(heads) if heads and self._synced else None

    async def watch(self, release: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        """Call `release` when a held event's deadline passes (between syncs)."""
        while not stop.is_set():
            self._changed.clear()
            deadline = self.next_deadline()
            delay = None if deadline is None else max(0.0, deadline - self.clock())
            waits = {
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._changed.wait()),
            }
            done, rest = await asyncio.wait(
                waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
            for task in rest:
                task.cancel()
            if done:
                continue
            try:  # the timeout: a deadline passed
                await release()
            except Exception:  # the rows stay; the next sync or deadline tries again
                log.exception("releasing expired Matrix events failed")
                await asyncio.sleep(1.0)

    def _readable(self, held: Held) -> Any | None:
        if not held.encrypted:
            return Plain(held.source)
        try:
            event = self.client.decrypt_event(self._megolm(held))
        except Exception:  # nio's EncryptionError and friends: still no key
            return None
        if isinstance(event, MegolmEvent) or not isinstance(getattr(event, "source", None), dict):
            return None
        log.info("room key for %s arrived: releasing it", held.event_id)
        return event

    def _megolm(self, held: Held) -> MegolmEvent:
        event = MegolmEvent.from_dict(held.source)
        event.room_id = held.room_id
        return event


def accept_forwards_from_session_owner(client: AsyncClient) -> None:
    """Accept a forwarded room key we requested from the very device that created the session.

    nio takes forwarded keys only from the bot's own verified devices, but the bot asks the
    sender's devices, and a client (Element) answers a device it had shared the session with
    by forwarding it. When the forwarding device's Olm identity key is the session's own
    sender key and the forwarding chain is empty, the key comes from its creator over an
    authenticated Olm channel: exactly as trustworthy as the original `m.room_key`.
    """
    olm = client.olm
    if olm is None:
        return
    original = olm._should_accept_forward

    def should_accept(sender: str, sender_key: str, event: Any) -> bool:
        if original(sender, sender_key, event):
            return True
        content = event.source.get("content", {})
        request = olm.outgoing_key_requests.get(event.session_id)
        return (
            request is not None
            and event.algorithm == MEGOLM
            and request.room_id == event.room_id
            and content.get("sender_key") == sender_key
            and not content.get("forwarding_curve25519_key_chain")
        )

    olm._should_accept_forward = should_accept

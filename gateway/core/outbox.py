"""The outbox worker: claims due rows, sends them, retries with backoff, buries the hopeless.

Rows move pending → sending → sent, or back to pending with a later `next_attempt_at`, or to
dead. A crash while a row is `sending` cannot tell whether the server got it, so `recover()`
on start puts such rows back to pending and they are sent again with the same idempotency
key — at least once, and deduplicated by the receiver where the protocol allows (Matrix
txn_id, email Message-ID). This is Mailman's switchboard recovery in SQL.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.core.payload import MalformedPayload, read_payload
from gateway.core.wakeup import Wakeup
from gateway.model import Channel, OutboxId, OutboxItem, PersonId
from gateway.ports import PermanentError, SendError, TransientError, Transport
from gateway.store.db import Row, Store, Tx, now_iso

log = logging.getLogger(__name__)

#: Queues an alert to the organisers inside the given transaction (`Engine.enqueue_alert_in`).
AlertFn = Callable[[Tx, str, Mapping[str, Any], str], Awaitable[object]]


#: How long a message that keeps failing transiently is tried before it is given up (dead).
GIVE_UP_AFTER = timedelta(days=3)


def backoff(attempts: int, rng: random.Random, *, base: float = 5.0, cap: float = 300.0) -> float:
    """Seconds before the next try: exponential (5, 10, 20 … s, capped) with ±25% jitter.

    Jitter spreads the retries of a broadcast that failed together (a homeserver outage) so
    they do not all hit the server again in the same second. The cap (5 minutes) bounds how
    long a server that is back waits to be used again.
    """
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay * rng.uniform(0.75, 1.25)


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        transports: Mapping[Channel, Transport],
        *,
        alert: AlertFn | None = None,
        give_up_after: timedelta = GIVE_UP_AFTER,
        batch: int = 50,
        concurrency: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.transports = dict(transports)
        self.alert = alert
        self.give_up_after = give_up_after
        self.batch = batch
        self.clock = clock
        self._rng = random.Random(seed)
        self._wake = Wakeup()
        self._limit = asyncio.Semaphore(concurrency)

    def wake(self) -> None:
        """New rows were committed: look now instead of at the next due time."""
        self._wake.set()

    async def recover(self) -> int:
        """Put rows a crash left in flight back in the queue (called once on start)."""
        async with self.store.transaction() as tx:
            return await tx.execute("UPDATE outbox SET status = 'pending' WHERE status = 'sending'")

    async def claim(self) -> list[OutboxItem]:
        """Mark due rows as sending and return them.

        Only the oldest unsent row per recipient is claimed, so a person's messages arrive in
        the order the flows wrote them even when an earlier one is waiting for a retry.
        """
        channels = [c.value for c in self.transports]
        if not channels:
            return []
        marks = ",".join("?" * len(channels))
        async with self.store.transaction() as tx:
            rows = await tx.all(
                f"UPDATE outbox SET status = 'sending', attempts = attempts + 1 WHERE id IN ("
                f" SELECT o.id FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
                f" AND o.channel IN ({marks}) AND NOT EXISTS (SELECT 1 FROM outbox e"
                f"  WHERE e.channel = o.channel AND e.address = o.address AND e.id < o.id"
                f"  AND e.status IN ('pending', 'sending'))"
                f" ORDER BY o.id LIMIT ?) RETURNING *",
                (now_iso(self.clock()), *channels, self.batch),
            )
        items: list[OutboxItem] = []
        for row in sorted(rows, key=lambda r: r["id"]):
            try:
                items.append(item_from_row(row))
            except MalformedPayload as exc:
                # No retry can make it readable: bury it (and tell the organisers) rather
                # than stop the worker or skip it silently at every claim.
                await self._bury_row(
                    row["id"], row["idempotency_key"], row["channel"], row["address"], "",
                    f"unreadable outbox row: {exc}",
                )  # fmt: skip
        return items

    async def run_once(self) -> int:
        """Claim and send one batch; return how many rows were claimed."""
        items = await self.claim()
        if not items:
            return 0
        results = await asyncio.gather(*(self._send(item) for item in items))
        sent = [
            (now_iso(self.clock()), external_id, item.id)
            for item, external_id in zip(items, results, strict=True)
            if external_id is not None
        ]
        if sent:
            # One transaction marks the whole batch: a crash before it only means these rows
            # are sent again with the same keys, which the receivers deduplicate.
            async with self.store.transaction() as tx:
                await tx.executemany(
                    "UPDATE outbox SET status = 'sent', sent_at = ?, external_id = ?,"
                    " last_error = '' WHERE id = ?",
                    sent,
                )
        return len(items)

    async def run(self, stop: asyncio.Event) -> None:
        await self.recover()
        while not stop.is_set():
            if await self.run_once():
                continue
            self._wake.clear()
            await self._wake.sleep(stop, await self.seconds_until_due())

    async def seconds_until_due(self, idle: float = 5.0) -> float:
        """Until the next due row; at most `idle`, so rows queued by another process (a
        `gateway crews approve` beside the running service) go out within seconds."""
        async with self.store.read() as tx:
            row = await tx.one("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'")
        if not row or row[0] is None:
            return idle
        due = datetime.fromisoformat(row[0])
        return max(0.0, min(idle, (due - self.clock()).total_seconds()))

    async def _send(self, item: OutboxItem) -> str | None:
        """Send one item; return its external id, or None when it failed (already recorded)."""
        transport = self.transports[item.channel]
        async with self._limit:
            try:
                return await transport.send(item)
            except TransientError as exc:
                await self._retry_or_bury(item, exc, exc.retry_after)
            except PermanentError as exc:
                await self._bury(item, str(exc))
            except Exception as exc:  # an unexpected transport bug: retry, never lose the row
                log.exception("transport %s failed on outbox %s", item.channel, item.id)
                await self._retry_or_bury(item, SendError(f"{type(exc).__name__}: {exc}"), None)
        return None

    async def _retry_or_bury(
        self, item: OutboxItem, exc: SendError, retry_after: float | None
    ) -> None:
        # Transient means "try again": an outage of minutes or hours must lose nothing, so a
        # row is given up only when it has waited longer than anyone would still want it.
        waited = self.clock() - (item.created_at or self.clock())
        if waited >= self.give_up_after:
            hours = waited.total_seconds() / 3600
            await self._bury(
                item, f"gave up after {item.attempts} attempts over {hours:.0f} h: {exc}"
            )
            return
        delay = max(retry_after or 0.0, backoff(item.attempts, self._rng))
        due = self.clock() + timedelta(seconds=delay)
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, last_error = ?"
                " WHERE id = ?",
                (now_iso(due), str(exc)[:1000], item.id),
            )
        log.info("outbox %s: retry in %.1fs (%s)", item.id, delay, exc)

    async def _bury(self, item: OutboxItem, reason: str) -> None:
        summary = item.body.subject or item.body.text[:80]
        await self._bury_row(
            item.id, item.idempotency_key, item.channel.value, item.address, summary, reason
        )

    async def _bury_row(
        self, row_id: int, key: str, channel: str, address: str, summary: str, reason: str
    ) -> None:
        # The dead letter and its alert commit together: a crash between them would leave a
        # dead message nobody hears about.
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE outbox SET status = 'dead', last_error = ? WHERE id = ?",
                (reason[:1000], row_id),
            )
            # Never alert about a failed alert: that could loop while the organisers' channel
            # is down.
            if self.alert is not None and not key.startswith("dead:"):
                await self.alert(
                    tx,
                    "core/delivery_failed",
                    {"channel": channel, "address": address, "reason": reason, "subject": summary},
                    f"dead:{row_id}",
                )
        log.warning("outbox %s is dead: %s", row_id, reason)


def item_from_row(row: Row) -> OutboxItem:
    """The item a claimed row stands for; raises MalformedPayload when it cannot be read."""
    payload = read_payload(row["payload"], row["kind"])
    return OutboxItem(
        id=OutboxId(row["id"]),
        idempotency_key=row["idempotency_key"],
        channel=Channel(row["channel"]),
        address=row["address"],
        person=PersonId(row["person_id"]) if row["person_id"] is not None else None,
        gathering=row["gathering"],
        flow=row["flow"],
        attempts=row["attempts"],
        body=payload.body,
        is_reply=payload.is_reply,
        in_reply_to=payload.in_reply_to,
        thread_root=payload.thread_root,
        reply_token=payload.reply_token,
        created_at=datetime.fromisoformat(row["created_at"]),
    )


async def requeue_dead(store: Store, ids: Sequence[int] = (), *, now: datetime) -> int:
    """Put dead rows (all, or those in `ids`) back in the queue with a fresh retry window.

    `created_at` is when the row was last queued, so the age limit counts from now.
    """
    where = "status = 'dead'"
    params: list[object] = []
    if ids:
        where += f" AND id IN ({','.join('?' * len(ids))})"
        params += list(ids)
    async with store.transaction() as tx:
        return await tx.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?,"
            f" created_at = ? WHERE {where}",
            (now_iso(now), now_iso(now), *params),
        )

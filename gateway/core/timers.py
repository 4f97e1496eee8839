"""The timer loop: feeds due timers to the engine as TICK messages.

Timers are rows, so a reminder that came due while the service was down fires when it comes
back (the flow sees `payload["due_at"]` and the real `now`, and may decide it is stale). The
inbox row `timer:<id>:<due_at>` and the delete inside the same transaction make each firing
happen once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.core.engine import Engine
from gateway.core.wakeup import Wakeup
from gateway.model import Channel, InboundKind, InboundMessage, PersonId, Target
from gateway.store.db import now_iso

log = logging.getLogger(__name__)


class TimerLoop:
    def __init__(
        self, engine: Engine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._wake = Wakeup()

    def wake(self) -> None:
        self._wake.set()

    async def fire_due(self, limit: int = 200) -> int:
        """Feed every due timer to the engine; return how many fired."""
        async with self.engine.store.read() as tx:
            rows = await tx.all(
                "SELECT id, gathering, flow, person_id, name, due_at, payload FROM timers"
                " WHERE due_at <= ? ORDER BY due_at, id LIMIT ?",
                (now_iso(self.clock()), limit),
            )
        fired = 0
        for row in rows:
            payload = {**json.loads(row["payload"]), "timer_id": row["id"], "due_at": row["due_at"]}
            message = InboundMessage(
                channel=Channel.TIMER,
                external_id=f"timer:{row['id']}:{row['due_at']}",
                kind=InboundKind.TICK,
                received_at=datetime.fromisoformat(row["due_at"]),
                text=row["name"],
                target=Target(row["gathering"], row["flow"], PersonId(row["person_id"])),
                payload=payload,
            )
            handled = await self.engine.handle(message)
            fired += 0 if handled.duplicate else 1
        return fired

    async def seconds_until_next(self, idle: float = 30.0) -> float:
        async with self.engine.store.read() as tx:
            row = await tx.one("SELECT MIN(due_at) FROM timers")
        if not row or row[0] is None:
            return idle
        return max(0.0, min(idle, (datetime.fromisoformat(row[0]) - self.clock()).total_seconds()))

    async def run(self, stop: asyncio.Event, on_fired: Callable[[], None] | None = None) -> None:
        while not stop.is_set():
            if await self.fire_due():
                if on_fired:
                    on_fired()
                continue
            self._wake.clear()
            await self._wake.sleep(stop, await self.seconds_until_next())

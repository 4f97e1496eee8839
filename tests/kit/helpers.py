"""Small reusable test helpers: inbound message builders, a recording transport, a gathering.

`Harness` wires the real Engine, a real SQLite store (a file in a temporary directory), the
real OutboxWorker and TimerLoop to `FakeTransport`s that record what would have been sent, and
a clock the test moves by hand. A fake transport is for engine tests only; the transports
themselves are tested against real servers.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.base import Flow
from flows.config import GatheringConfig
from gateway.core.engine import Engine, Handled
from gateway.core.outbox import OutboxWorker
from gateway.core.timers import TimerLoop
from gateway.model import (
    CalendarAnswer,
    Channel,
    Identity,
    IdentityKind,
    InboundKind,
    InboundMessage,
    OutboxItem,
)
from gateway.store.db import Store, open_store

_ids = itertools.count(1)


def channel_of(identity: Identity) -> Channel:
    return Channel.EMAIL if identity.kind == IdentityKind.EMAIL else Channel.MATRIX


def inbound(
    sender: Identity,
    text: str = "",
    *,
    kind: InboundKind = InboundKind.TEXT,
    at: datetime | None = None,
    external_id: str | None = None,
    **fields: Any,
) -> InboundMessage:
    """A message from `sender` on the channel of its identity; a fresh external id by default."""
    return InboundMessage(
        channel=channel_of(sender),
        external_id=external_id or f"msg-{next(_ids)}",
        kind=kind,
        received_at=at or datetime(2027, 1, 1, tzinfo=UTC),
        sender=sender,
        text=text,
        **fields,
    )


def calendar_reply(sender: Identity, uid: str, partstat: str, sequence: int) -> InboundMessage:
    return inbound(
        sender,
        kind=InboundKind.CALENDAR_REPLY,
        calendar=CalendarAnswer(
            uid=uid, partstat=partstat, sequence=sequence, attendee=sender.address
        ),
    )


class FakeTransport:
    """Records every item it is asked to send; returns a stable external id."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.sent: list[OutboxItem] = []

    async def send(self, item: OutboxItem) -> str:
        self.sent.append(item)
        return f"out-{item.idempotency_key}"


@dataclass
class Clock:
    now: datetime = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Harness:
    """The real engine, store, outbox and timers around fake transports and a hand clock."""

    store: Store
    engine: Engine
    clock: Clock
    transports: dict[Channel, FakeTransport]
    worker: OutboxWorker
    timers: TimerLoop
    delivered: int = field(default=0)

    @classmethod
    async def open(
        cls,
        tmp_path: Path,
        flows: Mapping[str, Flow],
        gatherings: Mapping[str, GatheringConfig],
        clock: Clock | None = None,
    ) -> Harness:
        clock = clock or Clock()
        store = await open_store(tmp_path / "gateway.sqlite3", durability="normal")
        engine = Engine(store, flows, gatherings, clock=clock)
        transports = {c: FakeTransport(c) for c in (Channel.EMAIL, Channel.MATRIX)}
        worker = OutboxWorker(store, transports, clock=clock, seed=1)
        return cls(store, engine, clock, transports, worker, TimerLoop(engine, clock=clock))

    async def close(self) -> None:
        await self.store.close()

    async def handle(self, message: InboundMessage) -> Handled:
        return await self.engine.handle(message)

    async def say(self, sender: Identity, text: str = "", **fields: Any) -> list[OutboxItem]:
        """Handle one message from `sender` and return what the gateway sent as a result.

        By email it is a reply to the last message sent to the sender, as a mail client's
        Reply is (pass `in_reply_to=None` for a fresh mail, e.g. a forged one)."""
        if sender.kind == IdentityKind.EMAIL and "in_reply_to" not in fields:
            mine = [i for i in self.transports[Channel.EMAIL].sent if i.address == sender.address]
            fields["in_reply_to"] = f"out-{mine[-1].idempotency_key}" if mine else None
        await self.handle(inbound(sender, text, at=self.clock.now, **fields))
        return await self.deliver()

    async def deliver(self) -> list[OutboxItem]:
        """Run the outbox until it is empty; return the items sent since the last call."""
        while await self.worker.run_once():
            pass
        everything = sorted(
            (i for t in self.transports.values() for i in t.sent), key=lambda i: i.id
        )
        fresh = everything[self.delivered :]
        self.delivered = len(everything)
        return fresh

    async def fire_timers(self) -> list[OutboxItem]:
        await self.timers.fire_due()
        return await self.deliver()

    async def run(self, person: int, flow: str = "registration") -> tuple[str, dict[str, Any]]:
        """(status, state) of a flow run; person 0 is the gathering-level run."""
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT status, state FROM flow_runs WHERE flow = ? AND person_id = ?",
                (flow, person),
            )
        return (row["status"], json.loads(row["state"])) if row else ("", {})

    async def person_of(self, identity: Identity) -> int:
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT person_id FROM identities WHERE kind = ? AND address = ?",
                (identity.kind.value, identity.address),
            )
        assert row is not None, f"{identity} is not a person"
        return int(row[0])

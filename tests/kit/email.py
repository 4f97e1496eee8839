"""The gateway's email half as `gateway run` wires it, driven step by step by email tests.

`gateway` builds the service from a config (`build_service`: store, engine, outbox worker,
email transport) with the one test flow, `tests.kit.engine.Echo`, and its templates; the
test then runs the parts it checks itself (`send_all`, a `reader()` or a `listener()` made
with the production intake), rather than `Service.run`, so it can look between steps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.app.channels import build_service, mail_intake
from gateway.app.service import Service
from gateway.channels.email.receive import ImapReader, MailIntake, MailListener
from gateway.channels.email.send import EmailTransport
from gateway.config import (
    EmailSettings,
    ImapSettings,
    ListenerSettings,
    LoadedConfig,
    Organiser,
    Secret,
    ServiceConfig,
    SmtpSettings,
    StoreSettings,
)
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.model import Channel, Identity, IdentityKind
from gateway.store.db import Durability, Store, load_cursor
from tests.kit.engine import INVITE_UID, Echo, gathering, write_templates

GATHERING = "camp"
FLOW = Echo.name
__all__ = ["FLOW", "GATHERING", "INVITE_UID", "Gateway", "gateway", "settings", "until"]


def settings(
    address: str,
    *,
    smtp_port: int,
    imap: tuple[int, str] | None = None,
    idle: bool = True,
    listener: str | None = None,
    max_connections: int = 2,
    poll_seconds: float = 60,
) -> EmailSettings:
    """Plain-text loopback settings; `imap` is (port, password) of `address` on Dovecot."""
    return EmailSettings(
        address=address,
        display_name="Camp 2027",
        token_secret=Secret(value="test-token-secret"),
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=smtp_port,
            security="none",
            max_connections=max_connections,
            timeout=10,
        ),
        imap=ImapSettings(
            host="127.0.0.1",
            port=imap[0],
            security="none",
            username=address,
            password=Secret(value=imap[1]),
            idle=idle,
            poll_seconds=poll_seconds,
        )
        if imap
        else None,
        listener=ListenerSettings(host="127.0.0.1", port=0, protocol=listener)  # type: ignore[arg-type]
        if listener
        else None,
    )


@dataclass
class Gateway:
    """The email half of the service: store, engine, outbox worker, transport, intake."""

    service: Service
    intake: MailIntake
    settings: EmailSettings

    @property
    def store(self) -> Store:
        return self.service.engine.store

    @property
    def engine(self) -> Engine:
        return self.service.engine

    @property
    def outbox(self) -> OutboxWorker:
        return self.service.outbox

    @property
    def transport(self) -> EmailTransport:
        transport = self.service.channels.senders[Channel.EMAIL]
        assert isinstance(transport, EmailTransport)
        return transport

    def reader(self) -> ImapReader:
        assert self.settings.imap is not None
        return ImapReader(
            self.settings.imap, self.intake, lambda name: load_cursor(self.store, name)
        )

    def listener(self) -> MailListener:
        return MailListener(self.settings, self.intake)

    async def send_all(self) -> int:
        """Run the outbox until nothing is due; return how many rows were sent."""
        total = 0
        while n := await self.outbox.run_once():
            total += n
        return total

    async def run_state(self, person: int) -> tuple[str, dict[str, Any]] | None:
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT status, state FROM flow_runs WHERE gathering = ? AND"
                " flow = ? AND person_id = ?",
                (GATHERING, FLOW, person),
            )
        return (row["status"], json.loads(row["state"])) if row else None

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        async with self.store.read() as tx:
            return await tx.all(sql, params)


@asynccontextmanager
async def gateway(
    db: Path,
    email: EmailSettings,
    templates: Path,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    organisers: tuple[Identity, ...] = (),
    unproven_daily_limit: int | None = None,
    durability: Durability = "full",
) -> AsyncIterator[Gateway]:
    """The service for `email` with its store at `db`; `clock` is the engine's, which the
    service hands to its outbox, transport and failure counts. Strangers are answered without
    a daily limit unless one is given: tests write many mails from one new address."""
    if unproven_daily_limit is not None:
        email = email.model_copy(update={"unproven_daily_limit": unproven_daily_limit})
    config = LoadedConfig(
        path=db.parent / "gateway.toml",
        service=ServiceConfig(
            store=StoreSettings(path=db, durability=durability),
            templates=write_templates(templates),
            organisers=[_organiser(o) for o in organisers],
            email=email,
        ),
        gatherings={GATHERING: gathering(GATHERING, capacity=20)},
        sources={},
    )
    service = await build_service(
        config, flows={FLOW: Echo()}, clock=clock, unproven_daily_limit=unproven_daily_limit
    )
    intake = mail_intake(config, email, service.engine, service.wake)
    try:
        yield Gateway(service, intake, email)
    finally:
        for close in service.channels.closers:
            await close()
        await service.engine.store.close()


def _organiser(identity: Identity) -> Organiser:
    if identity.kind == IdentityKind.EMAIL:
        return Organiser(name=identity.address, email=identity.address)
    return Organiser(name=identity.address, matrix=identity.address)


async def until(predicate: Any, limit: float = 15.0, interval: float = 0.02) -> None:
    """Wait for an async condition; a bound on waiting, never an assertion on speed."""
    async with asyncio.timeout(limit):
        while not await predicate():  # noqa: ASYNC110 - polls a database or maildir
            await asyncio.sleep(interval)

"""A tiny registration-like flow and a gateway assembled from real parts, for email tests.

The flow asks two numbered questions, asks for confirmation, sends a calendar invite and
records the calendar answer as `attendance`, like the real registration flow does, so the
transports can be proven end to end without depending on that flow's details. Every step
appends to `seen`, which lets crash tests check that each mail was applied exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

from flows.base import Outcome, StepContext
from flows.config import GatheringConfig
from gateway.channels.email.failures import MIGRATIONS as EMAIL_MIGRATIONS
from gateway.channels.email.failures import MailFailures
from gateway.channels.email.inbound import conversation_index, token_maker
from gateway.channels.email.receive import ImapReader, MailIntake, MailListener
from gateway.channels.email.send import EmailTransport
from gateway.config import EmailSettings, ImapSettings, ListenerSettings, Secret, SmtpSettings
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.core.render import Renderer
from gateway.model import Identity, InboundKind, InboundMessage, Invite, Outgoing
from gateway.store.db import Store, load_cursor, open_store

GATHERING = "camp"
FLOW = "signup"
INVITE_UID = "camp-2027@example.test"

TEMPLATES = {
    "questions": "1. What is your name?\n2. What do you eat?\n\nReply below each question.",
    "confirm": "We have: {{ answers }}. Reply yes to confirm.",
    "welcome": "You are in. The invitation is attached.",
    "noted": "Noted: {{ text }}",
}


class Signup:
    """questions → answers → "yes" → invite → calendar answer stored as `attendance`."""

    name: ClassVar[str] = FLOW
    reads: ClassVar[tuple[str, ...]] = ()

    def wants(self, message: InboundMessage, status: str) -> bool:
        return True

    def step(self, ctx: StepContext) -> Outcome:
        message = ctx.message
        state = dict(ctx.state)
        state["seen"] = [*state.get("seen", []), message.external_id]
        if message.kind == InboundKind.CALENDAR_REPLY and message.calendar is not None:
            state["attendance"] = message.calendar.partstat.lower()
            status = "accepted" if message.calendar.partstat == "ACCEPTED" else "declined"
            return Outcome(state=state, status=status)
        if message.kind != InboundKind.TEXT:
            return Outcome(state=state, ignored=True)
        stage = state.get("stage")
        if stage is None:
            state["stage"] = "asked"
            return Outcome(state=state, status="asked", send=[self._say(ctx, "questions")])
        if stage == "asked" and message.answers:
            state["answers"] = {str(k): v for k, v in message.answers.items()}
            state["stage"] = "confirming"
            return Outcome(
                state=state,
                status="confirming",
                send=[self._say(ctx, "confirm", answers=state["answers"])],
            )
        if stage == "confirming" and message.text.strip().lower().startswith("yes"):
            state["stage"] = "confirmed"
            invite = Invite(
                uid=INVITE_UID,
                sequence=0,
                method="REQUEST",
                summary="Camp 2027",
                start=datetime(2027, 7, 1, 16, tzinfo=UTC),
                end=datetime(2027, 7, 5, 12, tzinfo=UTC),
                tzid="Europe/Lisbon",
                location="Quinta",
            )
            welcome = Outgoing(ctx.person.id, f"{FLOW}/welcome", invite=invite)
            return Outcome(state=state, status="confirmed", send=[welcome])
        return Outcome(state=state, send=[self._say(ctx, "noted", text=message.text)])

    @staticmethod
    def _say(ctx: StepContext, template: str, **context: Any) -> Outgoing:
        return Outgoing(ctx.person.id, f"{FLOW}/{template}", context)


def gathering() -> GatheringConfig:
    return GatheringConfig(
        slug=GATHERING, name="Camp", starts=date(2027, 7, 1), ends=date(2027, 7, 5), capacity=20
    )


def write_templates(root: Path) -> Renderer:
    """The flow's templates plus the core ones (held, rejected, …) from the repository."""
    folder = root / "en" / FLOW
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in TEMPLATES.items():
        (folder / f"{name}.txt.j2").write_text('{% set subject = "Camp 2027" %}' + body + "\n")
    core = root / "en" / "core"
    core.mkdir(parents=True, exist_ok=True)
    real = Path(__file__).resolve().parents[2] / "templates" / "en" / "core"
    for template in real.iterdir():
        (core / template.name).write_text(template.read_text())
    return Renderer(root)


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
    """The email half of the service: store, engine, outbox worker, transport, readers."""

    store: Store
    engine: Engine
    transport: EmailTransport
    outbox: OutboxWorker
    intake: MailIntake
    settings: EmailSettings

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


async def root_subject(store: Store, key: str) -> str | None:
    """The subject of a conversation's first message (what the service wires in)."""
    async with store.read() as tx:
        row = await tx.one(
            "SELECT json_extract(payload, '$.subject') FROM outbox WHERE idempotency_key = ?",
            (key,),
        )
    return str(row[0]) if row and row[0] else None


@asynccontextmanager
async def gateway(
    db: Path,
    email: EmailSettings,
    templates: Path,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    organisers: tuple[Identity, ...] = (),
    unproven_daily_limit: int | None = None,
) -> AsyncIterator[Gateway]:
    store = await open_store(db, durability="full", migrations=EMAIL_MIGRATIONS)
    engine = Engine(
        store,
        {FLOW: Signup()},
        {GATHERING: gathering()},
        renderer=write_templates(templates),
        token_maker=token_maker(email),
        default_flow=FLOW,
        clock=clock,
        organisers=organisers,
        unproven_daily_limit=unproven_daily_limit,
    )
    transport = EmailTransport(
        email, root_subject=lambda key: root_subject(store, key), clock=clock
    )
    outbox = OutboxWorker(store, {transport.channel: transport}, seed=1, clock=clock)
    intake = MailIntake(
        email,
        engine,
        MailFailures(store, clock),
        conversations=conversation_index([(GATHERING, FLOW)]),
        after_commit=outbox.wake,
    )
    try:
        yield Gateway(store, engine, transport, outbox, intake, email)
    finally:
        await transport.close()
        await store.close()


async def until(predicate: Any, limit: float = 15.0, interval: float = 0.02) -> None:
    """Wait for an async condition; a bound on waiting, never an assertion on speed."""
    async with asyncio.timeout(limit):
        while not await predicate():  # noqa: ASYNC110 - polls a database or maildir
            await asyncio.sleep(interval)

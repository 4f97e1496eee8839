"""A bot for transport tests: store + engine + MatrixTransport + outbox worker in this loop,
with a tiny echo flow, and helpers for participants (real nio clients) to read their rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nio import AsyncClient, MessageDirection, RoomMessagesResponse, SyncResponse

from flows.base import Flow, Outcome, StepContext
from gateway.channels.matrix.pending import KEY_WAIT
from gateway.channels.matrix.transport import MIGRATIONS, MatrixTransport
from gateway.config import MatrixSettings, Secret
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.core.render import Renderer
from gateway.model import Channel, Identity, InboundKind, InboundMessage, Outgoing, OutKind
from gateway.ops.router import Router
from gateway.store.db import Store, open_store
from tests.kit.engine import gathering
from tests.servers import MatrixUser, SynapseServer


class Echo:
    """Answers every person's message so tests can see what the bot understood.

    "poll" → a poll with three options; "many" → a multiple-choice poll; other text →
    "echo: TEXT"; a vote/reaction → "choice: CHOICE on EVENT"; an edit → "edit: TEXT of EVENT";
    a redaction → "redacted EVENT"; a rejected message → the engine's own note; "register"
    sets the run's status to "registered" (for announcements).
    """

    name: ClassVar[str] = "registration"
    reads: ClassVar[tuple[str, ...]] = ()

    def wants(self, message: InboundMessage, status: str) -> bool:
        return True

    def step(self, ctx: StepContext) -> Outcome:
        m = ctx.message
        me = ctx.person.id
        if m.kind == InboundKind.TEXT and m.text in ("poll", "many"):
            return Outcome(
                state={},
                send=[
                    Outgoing(
                        me,
                        "test/say",
                        {"words": "Which day?"},
                        kind=OutKind.POLL,
                        multiple=m.text == "many",
                        options=("Fri", "Sat", "Sun"),
                    )
                ],
            )
        if m.kind == InboundKind.CHOICE:
            words = f"choice: {m.choice} on {m.in_reply_to}"
        elif m.kind == InboundKind.EDIT:
            words = f"edit: {m.text} of {m.replaces}"
        elif m.kind == InboundKind.REDACTION:
            words = f"redacted {m.replaces}"
        else:
            words = f"echo: {m.text}"
        status = "registered" if m.text == "register" else None
        return Outcome(state={}, status=status, send=[Outgoing(me, "test/say", {"words": words})])


def make_renderer(tmp_path: Path) -> Renderer:
    root = tmp_path / "templates"
    (root / "en" / "test").mkdir(parents=True)
    (root / "en" / "test" / "say.txt.j2").write_text("{{ words }}\n")
    real = Path(__file__).resolve().parents[2] / "templates" / "en"
    for sub in real.iterdir():
        if sub.is_dir():
            (root / "en" / sub.name).mkdir(exist_ok=True)
            for template in sub.iterdir():
                (root / "en" / sub.name / template.name).write_text(template.read_text())
    return Renderer(root)


def settings_for(
    server: SynapseServer, user: MatrixUser, store_path: Path, **extra: Any
) -> MatrixSettings:
    return MatrixSettings(
        homeserver=server.url,
        user_id=user.user_id,
        access_token=Secret(value=user.access_token),
        store_path=store_path,
        **extra,
    )


@dataclass
class Bot:
    store: Store
    engine: Engine
    transport: MatrixTransport
    outbox: OutboxWorker


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path,
    settings: MatrixSettings,
    *,
    flows: Mapping[str, Flow] | None = None,
    organisers: Sequence[str] = (),
    renderer: Renderer | None = None,
    gatherings: Sequence[str] = ("camp",),
    worker: Mapping[str, Any] | None = None,
    key_wait: float | None = None,
) -> AsyncIterator[Bot]:
    store = await open_store(tmp_path / "gateway.sqlite3", migrations=MIGRATIONS)
    engine = Engine(
        store,
        flows or {"registration": Echo()},
        {slug: gathering(slug) for slug in gatherings},
        renderer=renderer or make_renderer(tmp_path),
        organisers=[Identity.matrix(o) for o in organisers],
    )
    # Organisers' commands reach the router as in the service (gateway/app/service.py).
    engine.desk = Router(engine).handle
    transport = MatrixTransport(
        settings,
        store,
        organisers=organisers,
        sync_timeout_ms=5000,
        key_wait=KEY_WAIT if key_wait is None else key_wait,
    )
    outbox = OutboxWorker(store, {Channel.MATRIX: transport}, **(worker or {}))
    transport.wake = outbox.wake
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(transport.run(engine, stop)),
        asyncio.create_task(outbox.run(stop)),
    ]
    try:
        yield Bot(store, engine, transport, outbox)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await transport.close()
        await store.close()


ROOMY: dict[str, Any] = {"room": {"timeline": {"limit": 200}}}


async def sync_until(
    client: AsyncClient,
    done: Callable[[], bool],
    *,
    rounds: int = 40,
    seen: Callable[[SyncResponse], None] | None = None,
) -> None:
    """Sync the participant until `done()` holds; fail after `rounds` long-polls (not a timer
    on the assertion: each round returns as soon as anything arrives)."""
    for _ in range(rounds):
        if done():
            return
        # A roomy timeline: the default (10 events) would drop answers from a busy sync.
        resp = await client.sync(timeout=3000, sync_filter=ROOMY)
        assert isinstance(resp, SyncResponse), resp
        if seen is not None:
            seen(resp)
    assert done(), "condition not reached"


class Inbox:
    """What a participant's client received from the bot, in order, by room."""

    def __init__(self, client: AsyncClient, bot_id: str) -> None:
        self.client, self.bot_id = client, bot_id
        self.events: list[dict[str, Any]] = []
        self.invites: list[str] = []

    def seen(self, resp: SyncResponse) -> None:
        for room_id, info in resp.rooms.join.items():
            for event in info.timeline.events:
                source = dict(event.source)
                if source.get("sender") == self.bot_id and "state_key" not in source:
                    source["room_id"] = room_id
                    self.events.append(source)
        self.invites.extend(resp.rooms.invite)

    def bodies(self) -> list[str]:
        return [str(e.get("content", {}).get("body", "")) for e in self.events]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, rounds: int = 40
    ) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def done() -> bool:
            found[:] = [e for e in self.events if predicate(e)]
            return bool(found)

        await sync_until(self.client, done, rounds=rounds, seen=self.seen)
        return found[0]

    async def wait_body(self, text: str, **kw: Any) -> dict[str, Any]:
        return await self.wait_for(lambda e: e.get("content", {}).get("body") == text, **kw)

    async def accept_invites(self) -> None:
        while self.invites:
            await self.client.join(self.invites.pop())
        resp = await self.client.sync(timeout=0)
        assert isinstance(resp, SyncResponse), resp
        self.seen(resp)


async def room_history(client: AsyncClient, room_id: str, sender: str) -> list[dict[str, Any]]:
    """Every event `sender` posted in the room, from the server's point of view."""
    out: list[dict[str, Any]] = []
    start = ""
    while True:
        resp = await client.room_messages(
            room_id, start=start, limit=100, direction=MessageDirection.front
        )
        assert isinstance(resp, RoomMessagesResponse), resp
        out.extend(
            e.source
            for e in resp.chunk
            if e.source.get("sender") == sender and "state_key" not in e.source
        )
        if not resp.chunk or not resp.end:
            return out
        start = resp.end

"""The bot for Matrix transport tests (the service as `gateway run` wires it, running the test
flow in this loop), and helpers for participants (real nio clients) to read their rooms.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nio import AsyncClient, MessageDirection, RoomMessagesResponse, SyncResponse

from flows.base import Flow
from gateway.app.service import Service
from gateway.channels.matrix.transport import MatrixTransport
from gateway.config import (
    LoadedConfig,
    MatrixSettings,
    Organiser,
    Secret,
    ServiceConfig,
    StoreSettings,
)
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.model import Channel
from gateway.store.db import Store
from tests.kit.engine import Echo, gathering, write_templates
from tests.kit.service import serving
from tests.servers import MatrixUser, SynapseServer


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
    """The running service's parts a Matrix test looks at."""

    service: Service
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
    gatherings: Sequence[str] = ("camp",),
    key_wait: float | None = None,
) -> AsyncIterator[Bot]:
    """The gateway with its Matrix channel as `gateway run` wires and runs it (`build_engine`,
    `build_channels`, `Service.run`), the test flow `Echo` and the test templates; store and
    templates in `tmp_path`, so a second block on the same `tmp_path` is a restart."""
    if key_wait is not None:
        settings = settings.model_copy(update={"key_wait": key_wait})
    config = LoadedConfig(
        path=tmp_path / "gateway.toml",
        service=ServiceConfig(
            store=StoreSettings(path=Path("gateway.sqlite3")),
            templates=write_templates(tmp_path / "templates"),
            organisers=[Organiser(name=o, matrix=o) for o in organisers],
            matrix=settings,
        ),
        gatherings={slug: gathering(slug) for slug in gatherings},
        sources={},
    )
    async with serving(config, flows=flows or {"registration": Echo()}) as service:
        transport = service.channels.senders[Channel.MATRIX]
        assert isinstance(transport, MatrixTransport)
        yield Bot(service, service.engine.store, service.engine, transport, service.outbox)


async def keep_keys(client: AsyncClient) -> None:
    """Upload and fetch device keys when nio says so (an E2EE participant between syncs)."""
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()


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

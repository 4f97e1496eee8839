"""The Matrix transport: sends outbox items as room events and feeds the sync stream to the engine.

    transport = MatrixTransport(settings, store, organisers=[o.matrix for o in cfg.organisers])
    worker = OutboxWorker(store, {Channel.MATRIX: transport, ...})
    transport.wake = worker.wake
    await transport.run(engine, stop)      # sync loop; returns when `stop` is set
    await transport.close()

Exactly-once in both directions rests on two stored values:

* the sync `next_batch` is committed by `Engine.handle_batch` in the same transaction as the
  inbox rows of that sync response, so a crash resumes where the committed rows end;
* a send uses a txn_id derived from the outbox idempotency key, and the device (and so the
  scope Synapse deduplicates txn_ids in) survives restarts (see matrix_session), so a send
  repeated after a crash returns the first event instead of posting a second one.

End-to-end encryption (`e2ee = true`): the bot keeps an Olm/Megolm store in `store_path` and
creates direct and group rooms encrypted. It cannot take part in interactive verification,
so it shares room keys with participants' devices whether or not they are verified
(`ignore_unverified_devices=True`): refusing would make the gateway silent for everyone who
never verified anything, which is nearly everyone. Organisers who want the ✓ on the bot's
messages verify the bot's device manually: compare the device id and Ed25519 fingerprint
printed in the log line "Matrix device … fingerprint …" at start with what their client shows
under the bot's sessions, and mark it verified there. Messages the bot cannot decrypt yet
wait for their room key (see matrix_pending); one still unreadable after `key_wait` seconds
is answered with a short note (REJECTED) asking the person to send it again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import aiohttp
from nio import (
    LocalProtocolError,
    MegolmEvent,
    RoomSendResponse,
    SyncResponse,
)

from gateway.channels.matrix.codec import (
    attachment_txn_id,
    mentions_user,
    parse_event,
    poll_content,
    split_text,
    text_content,
    txn_id,
)
from gateway.channels.matrix.commands import OrganiserCommands
from gateway.channels.matrix.files import upload_file
from gateway.channels.matrix.pending import KEY_WAIT, PendingDecryption
from gateway.channels.matrix.pending import MIGRATIONS as PENDING_MIGRATIONS
from gateway.channels.matrix.rooms import MIGRATIONS as ROOM_MIGRATIONS
from gateway.channels.matrix.rooms import RoomDirectory, raise_for
from gateway.channels.matrix.session import login, make_client
from gateway.channels.matrix.sync import (
    FIRST_SYNC_FILTER,
    SYNC_FILTER,
    accept_invites,
    backfill,
    crypto_housekeeping,
    note_departures,
    sleep_unless,
)
from gateway.config import MatrixSettings
from gateway.model import (
    Channel,
    GroupBody,
    InboundKind,
    InboundMessage,
    OutboxItem,
    PollBody,
    TextBody,
)
from gateway.ports import Inbound, TransientError
from gateway.store.db import Store, load_cursor

__all__ = ["CURSOR", "MIGRATIONS", "MatrixTransport", "txn_id"]

log = logging.getLogger(__name__)

MIGRATIONS = [*ROOM_MIGRATIONS, *PENDING_MIGRATIONS]
CURSOR = "matrix:next_batch"
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class MatrixTransport:
    """Sends outbox items to Matrix and runs the sync loop. One instance per service."""

    channel = Channel.MATRIX

    def __init__(
        self,
        settings: MatrixSettings,
        store: Store,
        *,
        organisers: Iterable[str] = (),
        wake: Callable[[], None] | None = None,
        sync_timeout_ms: int = 30_000,
        key_wait: float = KEY_WAIT,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = make_client(settings)
        self.organisers = frozenset(organisers)
        self.rooms = RoomDirectory(
            self.client, store, e2ee=settings.e2ee, organisers=self.organisers
        )
        self.commands = OrganiserCommands(self.client)
        #: Called after a sync committed outbox rows (the outbox worker's `wake`).
        self.wake = wake
        self.sync_timeout_ms = sync_timeout_ms
        #: Encrypted events waiting for their room key (only with e2ee).
        self.pending = PendingDecryption(self.client, store, wait=key_wait)
        self._login_lock = asyncio.Lock()
        self._logged_in = False
        self._synced = asyncio.Condition()
        self._rng = random.Random()

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    async def start(self) -> None:
        """Log in (once); safe to call from both the sync loop and the first send."""
        async with self._login_lock:
            if self._logged_in:
                return
            session = await login(self.client, self.settings)
            if self.settings.e2ee:
                if self.client.should_upload_keys:
                    await self.client.keys_upload()
                keys = self.client.olm.account.identity_keys if self.client.olm else {}
                log.info(
                    "Matrix device %s fingerprint %s", session.device_id, keys.get("ed25519", "?")
                )
            await self.commands.resolve_room(self.settings.organisers_room)
            self._logged_in = True

    async def close(self) -> None:
        await self.client.close()

    # -- sending ------------------------------------------------------------------------

    async def send(self, item: OutboxItem) -> str:
        try:
            await self.start()
            room_id = await self._room_for(item)
            body = item.body
            if isinstance(body, PollBody):
                content = poll_content(
                    body.text,
                    body.options,
                    max_selections=len(body.options) if body.multiple else 1,
                )
                key = txn_id(item.idempotency_key)
                return await self.send_event(room_id, "m.poll.start", content, key)
            parts = split_text(body.text)
            if len(parts) > 1:
                first = await self._send_parts(room_id, item, parts)
            else:
                content = text_content(body.text, body.html, in_reply_to=item.in_reply_to)
                key = txn_id(item.idempotency_key)
                first = await self.send_event(room_id, "m.room.message", content, key)
            if isinstance(body, TextBody):
                # After the text, each file with its own stable txn_id: posted once.
                for index, attachment in enumerate(body.attachments):
                    content = await upload_file(self.client, room_id, attachment)
                    txn = attachment_txn_id(item.idempotency_key, index)
                    await self.send_event(room_id, "m.room.message", content, txn)
            return first
        except _NETWORK_ERRORS as exc:
            raise TransientError(f"homeserver unreachable: {exc!r}") from exc

    async def _send_parts(self, room_id: str, item: OutboxItem, parts: list[str]) -> str:
        """A message too big for one event, as several in order; each part has its own
        stable txn_id, so a resend after a crash skips the parts the server already has."""
        first = ""
        for number, part in enumerate(parts):
            key = item.idempotency_key if number == 0 else f"{item.idempotency_key}#part{number}"
            content = text_content(part, in_reply_to=item.in_reply_to if number == 0 else None)
            event_id = await self.send_event(room_id, "m.room.message", content, txn_id(key))
            first = first or event_id
        return first

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn: str
    ) -> str:
        """Send one event with a caller-chosen txn_id; return its event id."""
        if self.settings.e2ee:
            await self._wait_until_synced(room_id)
        try:
            resp = await self.client.room_send(
                room_id, event_type, content, tx_id=txn, ignore_unverified_devices=True
            )
        except LocalProtocolError as exc:  # E2EE: room state not synced yet
            raise TransientError(f"cannot send to {room_id} yet: {exc}") from exc
        raise_for(resp, f"sending to {room_id}")
        assert isinstance(resp, RoomSendResponse)
        return str(resp.event_id)

    async def _room_for(self, item: OutboxItem) -> str:
        body = item.body
        if isinstance(body, GroupBody):
            if body.closes:
                return await self.rooms.close_group(item.address, body.room_name, body.room_topic)
            # The group key (item.address) names the room in the store and its state only.
            name = body.room_name or body.subject
            return await self.rooms.group_room(
                item.address, name, body.room_topic, body.group_addresses
            )
        if item.address.startswith("!"):
            return item.address  # a room, e.g. an answer to an organisers' command
        return await self.rooms.direct_room(item.address)

    async def _wait_until_synced(self, room_id: str, patience: float = 30.0) -> None:
        """nio encrypts only for rooms it has synced: wait for sync to report a new room."""
        async with self._synced:
            try:
                await asyncio.wait_for(
                    self._synced.wait_for(lambda: room_id in self.client.rooms), patience
                )
            except TimeoutError:
                raise TransientError(f"room {room_id} has not come through sync yet") from None

    # -- the sync loop ------------------------------------------------------------------

    async def run(self, engine: Inbound, stop: asyncio.Event) -> None:
        """Sync until `stop` is set, surviving homeserver outages with capped backoff."""
        if not self.settings.e2ee:
            await self._sync_loop(engine, stop)
            return
        # Held events expire between syncs too: a long-poll can last `sync_timeout_ms`.
        expiry = asyncio.create_task(self.pending.watch(lambda: self._release(engine), stop))
        try:
            await self._sync_loop(engine, stop)
        finally:
            expiry.cancel()
            await asyncio.gather(expiry, return_exceptions=True)

    async def _sync_loop(self, engine: Inbound, stop: asyncio.Event) -> None:
        failures = 0
        since: str | None = None
        full_state = True
        while not stop.is_set():
            try:
                await self.start()
                if since is None:
                    since = await load_cursor(self.store, CURSOR)
                if since is None:
                    since = await self._first_sync(engine)
                    full_state = False
                resp = await self._sync(since, full_state, stop)
                if resp is None:
                    return
                if not isinstance(resp, SyncResponse):
                    raise ConnectionError(str(resp))
                await self._apply(engine, resp, since)
            except (*_NETWORK_ERRORS, ConnectionError, LocalProtocolError) as exc:
                failures += 1
                delay = min(60.0, 0.5 * 2 ** min(failures, 7)) * self._rng.uniform(0.75, 1.25)
                log.warning("Matrix sync failed (%s); retrying in %.1fs", exc, delay)
                await sleep_unless(stop, delay)
                continue
            failures = 0
            since, full_state = resp.next_batch, False

    async def _first_sync(self, engine: Inbound) -> str:
        resp = await self.client.sync(timeout=0, sync_filter=FIRST_SYNC_FILTER, full_state=True)
        if not isinstance(resp, SyncResponse):
            raise ConnectionError(f"first sync failed: {resp}")
        await accept_invites(self.client, self.rooms, resp)
        await engine.handle_batch([], cursor=(CURSOR, resp.next_batch))
        await self._notify_synced()
        log.info("first Matrix sync: starting from now, earlier history ignored")
        return str(resp.next_batch)

    async def _sync(self, since: str, full_state: bool, stop: asyncio.Event) -> object | None:
        """One long-poll sync, abandoned (None) as soon as `stop` is set."""
        # A restart does a full-state sync so nio knows every room's members and encryption.
        sync = asyncio.ensure_future(
            self.client.sync(
                timeout=self.sync_timeout_ms,
                since=since,
                full_state=full_state,
                sync_filter=SYNC_FILTER,
            )
        )
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sync, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not sync.done():
            sync.cancel()
            return None
        result: object = sync.result()
        return result

    async def _apply(self, engine: Inbound, resp: SyncResponse, since: str) -> None:
        """Turn one sync response into inbox rows, committed with its next_batch."""
        if self.settings.e2ee:
            await crypto_housekeeping(self.client)
        await accept_invites(self.client, self.rooms, resp)
        for room_id in resp.rooms.leave:
            await self.rooms.forget_room(room_id)
        messages: list[InboundMessage] = []
        async with self.pending.lock:
            await self.pending.load()
            for room_id, info in resp.rooms.join.items():
                events = list(info.timeline.events)
                if info.timeline.limited and info.timeline.prev_batch:
                    events = (
                        await backfill(self.client, room_id, info.timeline.prev_batch, since)
                        + events
                    )
                await note_departures(self.rooms, self.user_id, room_id, [*info.state, *events])
                for event in events:
                    # Held events are stored before the position passing them is committed.
                    if self.settings.e2ee and await self.pending.hold(room_id, event):
                        continue
                    message = await self._inbound(engine, room_id, event)
                    if message is not None:
                        messages.append(message)
            self.pending.synced()
            await self._release(engine, messages, cursor=(CURSOR, resp.next_batch))
        await self.pending.send_requests()
        await self._notify_synced()

    async def _release(
        self,
        engine: Inbound,
        messages: list[InboundMessage] | None = None,
        cursor: tuple[str, str] | None = None,
    ) -> None:
        """Hand `messages` and the held events now readable (or expired) to the engine.

        Callers other than `_apply` (the expiry watcher) take `pending.lock` here.
        """
        if messages is None:
            async with self.pending.lock:
                await self._release(engine, [])
            return
        released = self.pending.releasable()
        for item in released:
            message = await self._inbound(engine, item.held.room_id, item.event)
            if message is not None:
                messages.append(message)
        if messages or cursor is not None:
            results = await engine.handle_batch(messages, cursor=cursor)
            # Wake the outbox before anything else: the answers are committed and due.
            if self.wake is not None and any(r.outbox for r in results):
                self.wake()
        await self.pending.done(released)

    async def _inbound(self, engine: Inbound, room_id: str, event: Any) -> InboundMessage | None:
        """One timeline event → a message for the engine, if it is a person talking to us."""
        source = getattr(event, "source", None)
        if not isinstance(source, dict):
            return None
        if isinstance(event, MegolmEvent):
            source = {**source, "type": "m.room.encrypted"}
        message = parse_event(source, room_id=room_id, bot_user_id=self.user_id)
        if message is None:
            return None
        known = await self.rooms.kind_of(room_id)
        if known is not None and known[0] == "closed":
            return None  # a past group's room, left to its members
        in_group = known is not None and known[0] == "group"
        command = None if in_group else self.commands.command(message, room_id)
        if command is not None:
            return command
        if room_id == self.commands.room_id:
            return None  # organisers talking among themselves
        if in_group and known is not None:
            if not await self._addressed_to_bot(message, source):
                return None
            # Which group's room: an answer there is about that group (a crew's call), not
            # about whatever group the sender is in by now.
            return replace(message, meta={**message.meta, "group": known[1]})
        if known is None:
            room = self.client.rooms.get(room_id)
            people = set(room.users) | set(room.invited_users) if room else set()
            if people - {self.user_id} != {message.sender.address if message.sender else ""}:
                log.info(
                    "ignoring %s in %s: not a direct or group room of the gateway",
                    message.external_id,
                    room_id,
                )
                return None
            await self.rooms.remember(
                "direct", message.sender.address if message.sender else "", room_id
            )
        return message

    async def _addressed_to_bot(self, message: InboundMessage, source: dict[str, Any]) -> bool:
        """In group rooms people talk to each other: only answers to us reach the engine."""
        if message.kind in (InboundKind.REJECTED, InboundKind.REDACTION, InboundKind.EDIT):
            return False
        content = source.get("content")
        if (
            message.kind == InboundKind.TEXT
            and isinstance(content, dict)
            and mentions_user(content, self.user_id)
        ):
            return True
        if message.in_reply_to is None:
            return False
        async with self.store.read() as tx:
            ours = await tx.one(
                "SELECT 1 FROM outbox WHERE channel = 'matrix' AND external_id = ?",
                (message.in_reply_to,),
            )
        return ours is not None

    async def _notify_synced(self) -> None:
        async with self._synced:
            self._synced.notify_all()

"""Held encrypted events, with a fake nio client: order, key requests, expiry, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import MegolmEvent

from gateway.channels.matrix.pending import (
    MEGOLM,
    MIGRATIONS,
    PendingDecryption,
    Plain,
    accept_forwards_from_session_owner,
)
from gateway.store.db import Store, open_store

ROOM, ANA, BEN, BOT = "!r:hs", "@ana:hs", "@ben:hs", "@bot:hs"


class FakeOlm:
    def __init__(self) -> None:
        self.outgoing_key_requests: dict[str, Any] = {}
        self.outgoing_to_device_messages: list[Any] = []

    def _should_accept_forward(self, sender: str, sender_key: str, event: Any) -> bool:
        return False


class FakeClient:
    """Decrypts an event once its session's key is in `keys` (as nio's store would)."""

    user_id, device_id = BOT, "BOTDEVICE"

    def __init__(self) -> None:
        self.olm = FakeOlm()
        self.keys: set[str] = set()
        self.sent: list[Any] = []

    def decrypt_event(self, event: MegolmEvent) -> Any:
        if event.session_id not in self.keys:
            raise RuntimeError("no session")
        return Plain(
            {
                **event.source,
                "type": "m.room.message",
                "content": {"msgtype": "m.text", "body": event.ciphertext},
            }
        )

    async def send_to_device_messages(self) -> None:
        self.sent.extend(self.olm.outgoing_to_device_messages)
        self.olm.outgoing_to_device_messages.clear()


def megolm(event_id: str, sender: str = ANA, session: str = "s1", text: str = "") -> MegolmEvent:
    event = MegolmEvent.from_dict(
        {
            "type": "m.room.encrypted",
            "event_id": event_id,
            "sender": sender,
            "origin_server_ts": 1,
            "content": {
                "algorithm": MEGOLM,
                "ciphertext": text or event_id,
                "sender_key": "curve-" + sender,
                "session_id": session,
                "device_id": "DEV",
            },
        }
    )
    assert isinstance(event, MegolmEvent)
    return event


def plain(event_id: str, sender: str = ANA) -> Plain:
    return Plain(
        {
            "type": "m.room.message",
            "event_id": event_id,
            "sender": sender,
            "content": {"msgtype": "m.text", "body": event_id},
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path / "db.sqlite3", migrations=MIGRATIONS)
    yield store
    await store.close()


async def make(store: Store, client: FakeClient, clock: Clock) -> PendingDecryption:
    pending = PendingDecryption(client, store, wait=60, clock=clock)  # type: ignore[arg-type]
    await pending.load()
    return pending


def ids(pending: PendingDecryption) -> list[str]:
    return [r.held.event_id for r in pending.releasable()]


async def test_a_late_key_releases_the_sender_queue_in_order(store: Store) -> None:
    client, clock = FakeClient(), Clock()
    pending = await make(store, client, clock)
    assert await pending.hold(ROOM, megolm("$1"))
    assert await pending.hold(ROOM, plain("$2"))  # readable, but Ana has a queue here
    assert not await pending.hold(ROOM, plain("$3", sender=BEN))  # Ben does not wait for Ana
    assert not await pending.hold("!other:hs", plain("$4"))  # nor does Ana elsewhere
    pending.synced()
    assert ids(pending) == []
    client.keys.add("s1")
    released = pending.releasable()
    assert [r.held.event_id for r in released] == ["$1", "$2"]
    assert released[0].event.source["content"]["body"] == "$1"  # decrypted
    await pending.done(released)
    assert len(pending) == 0
    assert not await pending.hold(ROOM, plain("$5"))  # the queue is gone


async def test_a_key_that_never_comes_expires_the_head_only_after_a_sync(store: Store) -> None:
    client, clock = FakeClient(), Clock()
    pending = await make(store, client, clock)
    await pending.hold(ROOM, megolm("$1"))
    clock.now += 30
    await pending.hold(ROOM, megolm("$2", session="s2"))
    clock.now += 31
    assert ids(pending) == []  # no sync applied since start: keys may be on their way
    pending.synced()
    released = pending.releasable()
    assert [r.held.event_id for r in released] == ["$1"]
    assert isinstance(released[0].event, MegolmEvent)  # the codec makes it REJECTED
    await pending.done(released)
    assert pending.next_deadline() == 1000.0 + 30 + 60
    clock.now += 30
    assert ids(pending) == ["$2"]


async def test_the_key_is_requested_once_from_the_senders_devices(store: Store) -> None:
    client, clock = FakeClient(), Clock()
    pending = await make(store, client, clock)
    await pending.hold(ROOM, megolm("$1"))
    await pending.hold(ROOM, megolm("$2"))  # same session
    await pending.send_requests()
    assert len(client.sent) == 1
    request = client.sent[0]
    assert (request.type, request.recipient, request.recipient_device) == (
        "m.room_key_request",
        ANA,
        "*",
    )
    assert request.content["body"]["session_id"] == "s1"
    assert request.content["requesting_device_id"] == "BOTDEVICE"


async def test_held_events_survive_a_restart_and_a_replayed_sync(store: Store) -> None:
    clock = Clock()
    first = await make(store, FakeClient(), clock)
    await first.hold(ROOM, megolm("$1"))
    await first.hold(ROOM, plain("$2"))
    client = FakeClient()
    second = await make(store, client, clock)
    assert await second.hold(ROOM, megolm("$1"))  # the same sync again: no second row
    assert len(second) == 2
    client.keys.add("s1")
    second.synced()
    assert ids(second) == ["$1", "$2"]
    await second.done(second.releasable())
    assert len(await make(store, FakeClient(), clock)) == 0


async def test_our_own_events_are_never_held(store: Store) -> None:
    pending = await make(store, FakeClient(), Clock())
    assert not await pending.hold(ROOM, megolm("$1", sender=BOT))


async def test_the_watcher_releases_at_the_deadline() -> None:
    class Quick(PendingDecryption):
        def next_deadline(self) -> float | None:
            return self.clock() + 0.05 if not calls else None

    calls: list[int] = []
    stop = asyncio.Event()
    pending = Quick(FakeClient(), None, wait=0.05)  # type: ignore[arg-type]

    async def release() -> None:
        calls.append(1)
        stop.set()

    await asyncio.wait_for(pending.watch(release, stop), 5)
    assert calls == [1]


class Forward:
    def __init__(self, sender_key: str, chain: list[str], room: str = ROOM) -> None:
        self.session_id, self.algorithm, self.room_id = "s1", MEGOLM, room
        self.source = {
            "content": {"sender_key": sender_key, "forwarding_curve25519_key_chain": chain}
        }


def test_forwards_are_accepted_from_the_session_owner_we_asked() -> None:
    client = FakeClient()
    accept_forwards_from_session_owner(client)  # type: ignore[arg-type]
    accept = client.olm._should_accept_forward
    assert not accept(ANA, "curveA", Forward("curveA", []))  # not requested
    client.olm.outgoing_key_requests["s1"] = type("Req", (), {"room_id": ROOM})()
    assert accept(ANA, "curveA", Forward("curveA", []))
    assert not accept(ANA, "curveA", Forward("curveA", [], room="!else:hs"))
    assert not accept(BEN, "curveB", Forward("curveA", []))  # someone else's session
    assert not accept(ANA, "curveA", Forward("curveA", ["curveX"]))  # forwarded before

"""Encrypted messages whose room key reaches the bot late, or never, on a real Synapse.

The participant is a real nio client that wraps the Megolm room key for the bot's device as
usual but holds the to-device message back, so the bot receives the encrypted event first.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, RoomCreateResponse, RoomKeyRequest, SyncResponse

from gateway.channels.matrix.rooms import ENCRYPTION_STATE
from tests.kit.matrix import Bot, Inbox, keep_keys, running_bot, settings_for, sync_until
from tests.kit.optional import require_module
from tests.servers import MatrixUser, SynapseServer

require_module("vodozemac")  # end-to-end encryption: a skip would hide a broken CI

REJECTED = "Sorry, we could not read your message: your message was encrypted with keys"


class Participant:
    """Maya's client, able to send under a Megolm session whose key the bot has not got."""

    def __init__(self, synapse: SynapseServer, user: MatrixUser, client: AsyncClient) -> None:
        self.synapse, self.user, self.client = synapse, user, client
        self.inbox: Inbox | None = None
        self.room = ""
        self.withheld: list[dict[str, Any]] = []

    async def open_room(self, bot_id: str) -> None:
        client = self.client
        await keep_keys(client)
        self.inbox = Inbox(client, bot_id)
        created = await client.room_create(
            is_direct=True, invite=[bot_id], initial_state=[ENCRYPTION_STATE]
        )
        assert isinstance(created, RoomCreateResponse), created
        room = self.room = created.room_id
        await sync_until(
            client,
            lambda: (
                room in client.rooms
                and bot_id in client.rooms[room].users
                and bot_id not in client.rooms[room].invited_users
            ),
        )
        await keep_keys(client)

    async def withhold_key(self) -> str:
        """Start a Megolm session and wrap its key for the bot, without sending it yet."""
        client, olm = self.client, self.client.olm
        assert olm is not None
        missing = client.get_missing_sessions(self.room)
        if missing:
            await client.keys_claim(missing)
        olm.create_outbound_group_session(self.room)
        self.withheld = [
            payload
            for _, payload in olm.share_group_session_parallel(
                self.room, list(client.rooms[self.room].users), ignore_unverified_devices=True
            )
        ]
        session = olm.outbound_group_sessions[self.room]
        session.shared = True  # as far as Maya's client knows, the key is on its way
        return str(session.id)

    async def send(self, body: str) -> str:
        assert self.client.olm is not None
        content = self.client.olm.group_encrypt(
            self.room, {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}
        )
        sent = await self.put(f"/rooms/{self.room}/send/m.room.encrypted/{uuid.uuid4()}", content)
        return str(sent["event_id"])

    async def release_key(self) -> None:
        for payload in self.withheld:
            await self.put(f"/sendToDevice/m.room.encrypted/{uuid.uuid4()}", payload)

    async def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(
            self.synapse.request,
            "PUT",
            "/_matrix/client/v3" + path,
            body,
            token=self.user.access_token,
        )

    async def echoes(self, text: str) -> list[str]:
        """What the bot answered so far, once an answer starting with `text` is there."""
        assert self.inbox is not None
        await self.inbox.wait_for(
            lambda e: str(e.get("content", {}).get("body", "")).startswith(text)
        )
        return [b for b in self.inbox.bodies() if b.startswith(("echo: ", REJECTED))]


async def held(bot: Bot, count: int) -> None:
    """Wait until the bot holds `count` events (it has synced them and found no key)."""
    for _ in range(200):
        if len(bot.transport.pending) == count:
            return
        await asyncio.sleep(0.05)
    assert len(bot.transport.pending) == count


async def inbox_rows(bot: Bot, *event_ids: str) -> int:
    marks = ",".join("?" * len(event_ids))
    async with bot.store.read() as tx:
        row = await tx.one(
            f"SELECT count(*) AS n FROM inbox WHERE external_id IN ({marks})", event_ids
        )
    assert row is not None
    return int(row["n"])


@pytest.fixture
async def maya(synapse: SynapseServer, matrix_client: Any) -> Participant:
    user = synapse.new_user("maya")
    return Participant(synapse, user, await matrix_client(user))


async def test_a_late_key_releases_the_messages_once_and_in_order(
    synapse: SynapseServer, maya: Participant, tmp_path: Path
) -> None:
    bot_user = synapse.new_user("bot")
    settings = settings_for(synapse, bot_user, tmp_path / "mx", e2ee=True)
    async with running_bot(tmp_path, settings) as bot:
        await maya.open_room(bot_user.user_id)
        await maya.withhold_key()
        first, second = await maya.send("first"), await maya.send("second")
        await held(bot, 2)
        assert await inbox_rows(bot, first, second) == 0
        await maya.release_key()
        assert await maya.echoes("echo: second") == ["echo: first", "echo: second"]
        assert await inbox_rows(bot, first, second) == 2
        assert len(bot.transport.pending) == 0
        # The next message (same session, key known) goes straight through.
        await maya.send("third")
        assert (await maya.echoes("echo: third"))[-1] == "echo: third"


async def test_the_key_is_requested_and_a_forward_from_its_creator_is_accepted(
    synapse: SynapseServer, maya: Participant, tmp_path: Path
) -> None:
    bot_user = synapse.new_user("bot")
    settings = settings_for(synapse, bot_user, tmp_path / "mx", e2ee=True)
    async with running_bot(tmp_path, settings) as bot:
        await maya.open_room(bot_user.user_id)
        session_id = await maya.withhold_key()
        event_id = await maya.send("asked for")
        await held(bot, 1)
        requests: list[RoomKeyRequest] = []

        def seen(resp: SyncResponse) -> None:
            requests.extend(e for e in resp.to_device_events if isinstance(e, RoomKeyRequest))

        await sync_until(maya.client, lambda: bool(requests), seen=seen)
        assert (requests[0].sender, requests[0].session_id) == (bot_user.user_id, session_id)
        # Answer as Element does for a device it had shared the session with: forward it.
        olm = maya.client.olm
        assert olm is not None
        group = olm.inbound_group_store.get(
            maya.room, olm.account.identity_keys["curve25519"], session_id
        )
        device = olm.device_store[bot_user.user_id][bot_user.device_id]
        olm_session = olm.session_store.get(device.curve25519)
        await maya.client.to_device(
            olm._encrypt_forwarding_key(maya.room, group, olm_session, device)
        )
        assert await maya.echoes("echo: asked for") == ["echo: asked for"]
        assert await inbox_rows(bot, event_id) == 1


async def test_a_key_that_never_comes_gets_the_sender_the_rejection(
    synapse: SynapseServer, maya: Participant, tmp_path: Path
) -> None:
    bot_user = synapse.new_user("bot")
    settings = settings_for(synapse, bot_user, tmp_path / "mx", e2ee=True)
    async with running_bot(tmp_path, settings, key_wait=1.5) as bot:
        await maya.open_room(bot_user.user_id)
        await maya.withhold_key()
        event_id = await maya.send("lost")
        await held(bot, 1)
        echoes = await maya.echoes(REJECTED)
        assert len(echoes) == 1
        assert "please send it again" in echoes[0]
        assert await inbox_rows(bot, event_id) == 1
        assert len(bot.transport.pending) == 0


async def test_a_held_message_survives_a_restart(
    synapse: SynapseServer, maya: Participant, tmp_path: Path
) -> None:
    bot_user = synapse.new_user("bot")
    settings = settings_for(synapse, bot_user, tmp_path / "mx", e2ee=True)
    async with running_bot(tmp_path, settings) as bot:
        await maya.open_room(bot_user.user_id)
        await maya.withhold_key()
        event_id = await maya.send("across a restart")
        await held(bot, 1)
    # The bot is down (its sync position is past the event) when the key is finally sent.
    await maya.release_key()
    async with running_bot(tmp_path, settings) as bot:
        assert await maya.echoes("echo: across a restart") == ["echo: across a restart"]
        assert await inbox_rows(bot, event_id) == 1

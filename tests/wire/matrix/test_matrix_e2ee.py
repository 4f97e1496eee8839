"""End-to-end encryption: an encrypted direct room, round trip with a participant's nio client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nio import RoomCreateResponse

from gateway.channels.matrix.rooms import ENCRYPTION_STATE
from tests.kit.matrix import Inbox, keep_keys, running_bot, settings_for, sync_until
from tests.kit.optional import require_module
from tests.servers import SynapseServer

require_module("vodozemac")  # end-to-end encryption: a skip would hide a broken CI


async def test_encrypted_round_trip(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    bot_user, maya = synapse.new_user("bot"), synapse.new_user("maya")
    client = await matrix_client(maya)
    assert client.olm is not None
    await keep_keys(client)
    inbox = Inbox(client, bot_user.user_id)
    settings = settings_for(synapse, bot_user, tmp_path / "mx", e2ee=True)
    async with running_bot(tmp_path, settings) as bot:
        created = await client.room_create(
            is_direct=True, invite=[bot_user.user_id], initial_state=[ENCRYPTION_STATE]
        )
        assert isinstance(created, RoomCreateResponse), created
        room = created.room_id
        await sync_until(
            client,
            lambda: (
                room in client.rooms
                and bot_user.user_id in client.rooms[room].users
                and bot_user.user_id not in client.rooms[room].invited_users
            ),
        )
        assert client.rooms[room].encrypted
        await keep_keys(client)
        sent = await client.room_send(
            room,
            "m.room.message",
            {"msgtype": "m.text", "body": "hello secret"},
            ignore_unverified_devices=True,
        )
        assert hasattr(sent, "event_id"), sent
        await client.send_to_device_messages()
        echo = await inbox.wait_for(
            lambda e: e.get("content", {}).get("body") == "echo: hello secret"
        )
        assert echo["type"] == "m.room.message"  # decrypted by the participant
        raw = synapse.request(
            "GET",
            f"/_matrix/client/v3/rooms/{room}/event/{echo['event_id']}",
            token=maya.access_token,
        )
        assert raw["type"] == "m.room.encrypted"  # and encrypted on the wire
        # The bot's own direct rooms are created encrypted too.
        other = synapse.new_user("ana")
        new_room = await bot.transport.rooms.direct_room(other.user_id)
        state = synapse.request(
            "GET", f"/_matrix/client/v3/rooms/{new_room}/state", token=bot_user.access_token
        )
        assert any(e["type"] == "m.room.encryption" for e in state)

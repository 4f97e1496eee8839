"""Files sent with a message, against a real Synapse: an `m.file` event after the text, in a
plain room and in an encrypted one, downloaded by the participant (and decrypted with nio),
posted once however often the same row is sent."""

from __future__ import annotations

import asyncio
import random
import urllib.request
from pathlib import Path
from typing import Any

from nio import AsyncClient, RoomCreateResponse

from gateway.channels.matrix.rooms import ENCRYPTION_STATE
from gateway.model import Attachment, Channel, OutboxItem
from tests.kit.matrix import Inbox, room_history, running_bot, settings_for, sync_until
from tests.kit.optional import require_module
from tests.kit.outbox import outbox_item
from tests.servers import SynapseServer
from tests.servers.synapse import MatrixUser

FILES = (
    Attachment("packing list.pdf", "application/pdf", random.Random(3).randbytes(50_000)),
    Attachment("plan.csv", "text/csv", b"name,seat\nAna,1\n"),
)


def with_files(key: str, address: str) -> OutboxItem:
    return outbox_item(
        idempotency_key=key,
        channel=Channel.MATRIX,
        address=address,
        text="Here is what to bring.",
        attachments=FILES,
    )


def download(synapse: SynapseServer, user: MatrixUser, mxc: str) -> bytes:
    """The participant fetches the file (authenticated media, Matrix 1.11)."""
    server, _, media = mxc.removeprefix("mxc://").partition("/")
    req = urllib.request.Request(f"{synapse.url}/_matrix/client/v1/media/download/{server}/{media}")
    req.add_header("Authorization", f"Bearer {user.access_token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        data: bytes = resp.read()
        return data


def files_in(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["content"] for e in events if e.get("content", {}).get("msgtype") == "m.file"]


async def test_files_follow_the_text_once_in_a_plain_room(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    bot_user, maya = synapse.new_user("bot"), synapse.new_user("maya")
    client = await matrix_client(maya)
    inbox = Inbox(client, bot_user.user_id)
    async with running_bot(tmp_path, settings_for(synapse, bot_user, tmp_path / "mx")) as bot:
        first = await bot.transport.send(with_files("f1", maya.user_id))
        # A resend of the same row (after a crash before it was marked sent).
        assert await bot.transport.send(with_files("f1", maya.user_id)) == first
        await sync_until(client, lambda: bool(client.invited_rooms), seen=inbox.seen)
        inbox.invites[:] = list(client.invited_rooms)
        await inbox.accept_invites()
        [room] = client.rooms
        history = await room_history(client, room, bot_user.user_id)
    bodies = [e["content"]["body"] for e in history if e["type"] == "m.room.message"]
    assert bodies == ["Here is what to bring.", *(f.name for f in FILES)]
    assert history[0]["event_id"] == first
    for content, sent in zip(files_in(history), FILES, strict=True):
        assert content["info"] == {"mimetype": sent.mime, "size": len(sent.data)}
        assert "file" not in content
        got = await asyncio.to_thread(download, synapse, maya, content["url"])
        assert got == sent.data


async def keep_keys(client: AsyncClient) -> None:
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()


async def test_files_are_encrypted_in_an_encrypted_room_and_posted_once(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    require_module("vodozemac")  # a skip would hide a broken CI
    from nio.crypto import decrypt_attachment

    bot_user, maya = synapse.new_user("bot"), synapse.new_user("maya")
    client = await matrix_client(maya)
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
        await keep_keys(client)
        # Writing first makes this the bot's direct room with maya (the Echo flow answers).
        await client.room_send(
            room,
            "m.room.message",
            {"msgtype": "m.text", "body": "hi"},
            ignore_unverified_devices=True,
        )
        await client.send_to_device_messages()
        await inbox.wait_body("echo: hi")
        item = with_files("f2", maya.user_id)
        await bot.transport.send(item)
        await bot.transport.send(item)
        await bot.transport.send(
            outbox_item(
                idempotency_key="f3", channel=Channel.MATRIX, address=maya.user_id, text="done"
            )
        )
        await inbox.wait_body("done")
    in_room = [e for e in inbox.events if e["room_id"] == room]
    bodies = [e["content"].get("body") for e in in_room]
    assert bodies == ["echo: hi", "Here is what to bring.", *(f.name for f in FILES), "done"]
    for content, sent in zip(files_in(in_room), FILES, strict=True):
        assert "url" not in content  # the key travels in `file`, inside the encrypted event
        encrypted = content["file"]
        ciphertext = await asyncio.to_thread(download, synapse, maya, encrypted["url"])
        assert ciphertext != sent.data
        plain = decrypt_attachment(
            ciphertext, encrypted["key"]["k"], encrypted["hashes"]["sha256"], encrypted["iv"]
        )
        assert plain == sent.data
    [file_event] = [e for e in in_room if e["content"].get("body") == FILES[0].name]
    raw = synapse.request(
        "GET",
        f"/_matrix/client/v3/rooms/{room}/event/{file_event['event_id']}",
        token=maya.access_token,
    )
    assert raw["type"] == "m.room.encrypted"

"""The Matrix transport against a real Synapse: participants are real nio clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nio import AsyncClient, RoomCreateResponse, RoomSendResponse

from tests.matrix.kit import Inbox, running_bot, settings_for
from tests.servers import SynapseServer


async def open_dm(client: AsyncClient, bot_id: str) -> str:
    resp = await client.room_create(is_direct=True, invite=[bot_id])
    assert isinstance(resp, RoomCreateResponse), resp
    await client.sync(timeout=0)
    return str(resp.room_id)


async def say(client: AsyncClient, room_id: str, content: dict[str, Any],
              event_type: str = "m.room.message") -> str:
    resp = await client.room_send(room_id, event_type, content)
    assert isinstance(resp, RoomSendResponse), resp
    return str(resp.event_id)


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


async def test_participant_dm_round_trip(synapse: SynapseServer, matrix_client: Any,
                                         tmp_path: Path) -> None:
    bot_user, maya = synapse.new_user("bot"), synapse.new_user("maya")
    client = await matrix_client(maya)
    inbox = Inbox(client, bot_user.user_id)
    async with running_bot(tmp_path, settings_for(synapse, bot_user, tmp_path / "mx")) as bot:
        room = await open_dm(client, bot_user.user_id)
        # The bot joins on its own; once it has, what Maya writes reaches the flow.
        await _wait_joined(client, room, bot_user.user_id)
        hello = await say(client, room, text("hello"))
        echo = await inbox.wait_body("echo: hello")
        assert echo["room_id"] == room
        assert echo["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": hello}}
        assert echo["content"]["format"] == "org.matrix.custom.html"

        poll = await say(client, room, text("poll"))
        start = await inbox.wait_for(lambda e: e["type"] == "m.poll.start")
        assert poll
        answers = start["content"]["org.matrix.msc3381.poll.start"]["answers"]
        await say(client, room, {"m.relates_to": {"rel_type": "m.reference",
                                                  "event_id": start["event_id"]},
                                 "org.matrix.msc3381.poll.response": {"answers": [answers[1]["id"]]}},
                  "org.matrix.msc3381.poll.response")
        await inbox.wait_body(f"choice: 2 on {start['event_id']}")

        await say(client, room, {"m.relates_to": {"rel_type": "m.annotation",
                                                  "event_id": echo["event_id"], "key": "✔️"}},
                  "m.reaction")
        await inbox.wait_body(f"choice: yes on {echo['event_id']}")

        await say(client, room, {**text(" * hello again"),
                                 "m.new_content": text("hello again"),
                                 "m.relates_to": {"rel_type": "m.replace", "event_id": hello}})
        await inbox.wait_body(f"edit: hello again of {hello}")

        await client.room_redact(room, hello)
        await inbox.wait_body(f"redacted {hello}")

        await say(client, room, {"msgtype": "m.image", "body": "cat.jpg", "url": "mxc://x/y"})
        rejected = await inbox.wait_for(lambda e: "could not read" in e["content"].get("body", ""))
        assert "images" in rejected["content"]["body"]
        assert bot.transport.user_id == bot_user.user_id


async def _wait_joined(client: AsyncClient, room_id: str, user_id: str) -> None:
    from tests.matrix.kit import sync_until

    await sync_until(client, lambda: user_id in client.rooms[room_id].users
                     and user_id not in client.rooms[room_id].invited_users)

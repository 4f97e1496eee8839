"""The Matrix transport against a real Synapse: participants are real nio clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, RoomCreateResponse, RoomSendResponse

from flows.organisers import Organisers
from gateway.model import Channel, OutboxItem, OutKind
from gateway.ports import PermanentError
from tests.kit.engine import Echo
from tests.kit.matrix import Inbox, room_history, running_bot, settings_for, sync_until
from tests.kit.outbox import outbox_item
from tests.servers import SynapseServer


async def open_dm(client: AsyncClient, bot_id: str) -> str:
    resp = await client.room_create(is_direct=True, invite=[bot_id])
    assert isinstance(resp, RoomCreateResponse), resp
    await client.sync(timeout=0)
    return str(resp.room_id)


async def say(
    client: AsyncClient, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
) -> str:
    resp = await client.room_send(room_id, event_type, content)
    assert isinstance(resp, RoomSendResponse), resp
    return str(resp.event_id)


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


async def test_participant_dm_round_trip(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
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
        await say(
            client,
            room,
            {
                "m.relates_to": {"rel_type": "m.reference", "event_id": start["event_id"]},
                "org.matrix.msc3381.poll.response": {"answers": [answers[1]["id"]]},
            },
            "org.matrix.msc3381.poll.response",
        )
        await inbox.wait_body(f"choice: 2 on {start['event_id']}")

        await say(
            client,
            room,
            {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": echo["event_id"],
                    "key": "✔️",
                }
            },
            "m.reaction",
        )
        await inbox.wait_body(f"choice: yes on {echo['event_id']}")

        await say(
            client,
            room,
            {
                **text(" * hello again"),
                "m.new_content": text("hello again"),
                "m.relates_to": {"rel_type": "m.replace", "event_id": hello},
            },
        )
        await inbox.wait_body(f"edit: hello again of {hello}")

        await client.room_redact(room, hello)
        await inbox.wait_body(f"redacted {hello}")

        await say(client, room, {"msgtype": "m.image", "body": "cat.jpg", "url": "mxc://x/y"})
        rejected = await inbox.wait_for(lambda e: "could not read" in e["content"].get("body", ""))
        assert "images" in rejected["content"]["body"]
        assert bot.transport.user_id == bot_user.user_id


async def _wait_joined(client: AsyncClient, room_id: str, user_id: str) -> None:
    await sync_until(
        client,
        lambda: (
            user_id in client.rooms[room_id].users
            and user_id not in client.rooms[room_id].invited_users
        ),
    )


def item(key: str, address: str, body: str, **extra: Any) -> OutboxItem:
    return outbox_item(
        idempotency_key=key, channel=Channel.MATRIX, address=address, text=body, **extra
    )


async def test_bot_reaches_out_first_once_and_reopens_after_a_leave(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    bot_user, maya = synapse.new_user("bot"), synapse.new_user("maya")
    client = await matrix_client(maya)
    inbox = Inbox(client, bot_user.user_id)
    settings = settings_for(synapse, bot_user, tmp_path / "mx")
    async with running_bot(tmp_path, settings) as bot:
        first = await bot.transport.send(item("k1", maya.user_id, "Welcome!"))
        # The same outbox row sent again (a crash after the send, before it was marked sent):
        # the same device and txn_id, so Synapse returns the first event.
        again = await bot.transport.send(item("k1", maya.user_id, "Welcome!"))
        assert again == first
        await sync_until(
            client, lambda: bool(inbox.invites) or bool(client.invited_rooms), seen=inbox.seen
        )
        room = (inbox.invites or list(client.invited_rooms))[0]
        inbox.invites[:] = [room]
        await inbox.accept_invites()
        history = await room_history(client, room, bot_user.user_id)
        assert [e["content"]["body"] for e in history if e["type"] == "m.room.message"] == [
            "Welcome!"
        ]
        direct = synapse.request(
            "GET",
            f"/_matrix/client/v3/user/{bot_user.user_id}/account_data/m.direct",
            token=bot_user.access_token,
        )
        assert direct == {maya.user_id: [room]}

        await client.room_leave(room)
        for _ in range(50):  # until the bot's sync has seen the leave
            if await bot.transport.rooms.kind_of(room) is None:
                break
            await client.sync(timeout=200)
        assert await bot.transport.rooms.kind_of(room) is None
        await bot.transport.send(item("k2", maya.user_id, "Still there?"))
        new_room = await bot.transport.rooms.direct_room(maya.user_id)
        assert new_room != room


async def test_unknown_user_is_a_permanent_error(synapse: SynapseServer, tmp_path: Path) -> None:
    bot_user = synapse.new_user("bot")
    async with running_bot(tmp_path, settings_for(synapse, bot_user, tmp_path / "mx")) as bot:
        with pytest.raises(PermanentError):
            await bot.transport.send(item("k", "@nobody_here:localhost", "hi"))


async def test_group_room_invites_members_once_and_makes_organisers_moderators(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    bot_user, a, b, org = (synapse.new_user(n) for n in ("bot", "ana", "ben", "org"))
    settings = settings_for(synapse, bot_user, tmp_path / "mx")
    async with running_bot(tmp_path, settings, organisers=[org.user_id]) as bot:
        crew = item(
            "g1",
            "camp/crew-1",
            "Meet your crew",
            kind=OutKind.GROUP,
            subject="Crew 1",
            group_addresses=(a.user_id,),
        )
        await bot.transport.send(crew)
        room = await bot.transport.rooms.group_room("camp/crew-1", "", "", [a.user_id])
        await bot.transport.send(
            item(
                "g2",
                "camp/crew-1",
                "Ben joins",
                kind=OutKind.GROUP,
                group_addresses=(a.user_id, b.user_id),
            )
        )
        state = synapse.request(
            "GET", f"/_matrix/client/v3/rooms/{room}/state", token=bot_user.access_token
        )
    members = {
        e["state_key"]: e["content"]["membership"] for e in state if e["type"] == "m.room.member"
    }
    assert members == {bot_user.user_id: "join", a.user_id: "invite", b.user_id: "invite"}
    power = next(e["content"] for e in state if e["type"] == "m.room.power_levels")
    assert power["users"][org.user_id] == 50
    name = next(e["content"]["name"] for e in state if e["type"] == "m.room.name")
    assert name == "Crew 1"


async def test_a_closed_group_room_keeps_its_members_and_is_renamed(
    synapse: SynapseServer, tmp_path: Path
) -> None:
    bot_user, a, b = (synapse.new_user(n) for n in ("bot", "ana", "ben"))
    settings = settings_for(synapse, bot_user, tmp_path / "mx")
    async with running_bot(tmp_path, settings) as bot:
        rooms = bot.transport.rooms
        await bot.transport.send(
            item(
                "g1",
                "camp/crew-1",
                "Meet your crew",
                kind=OutKind.GROUP,
                subject="Crew 1 · Camp",
                group_addresses=(a.user_id, b.user_id),
                room_name="Camp — Crew 1",
                room_topic="Crew 1 of Camp",
            )
        )
        room = await rooms.group_room("camp/crew-1", "", "", [a.user_id, b.user_id])
        # The closing notice lists nobody: closing must not read that as "everyone left".
        await bot.transport.send(
            item(
                "g2",
                "camp/crew-1",
                "Round 1 has ended",
                kind=OutKind.GROUP,
                closes=True,
                room_name="Camp — Crew 1 (ended)",
                room_topic="Crew 1 of Camp, ended",
            )
        )
        assert await rooms.kind_of(room) == ("closed", "camp/crew-1")
        with pytest.raises(PermanentError):
            await rooms.group_room("camp/crew-1", "", "", [a.user_id])
        with pytest.raises(PermanentError):
            await rooms.close_group("camp/crew-9", "x", "y")
        state = synapse.request(
            "GET", f"/_matrix/client/v3/rooms/{room}/state", token=bot_user.access_token
        )
    content = {e["type"]: e["content"] for e in state if e["state_key"] == ""}
    assert content["m.room.name"] == {"name": "Camp — Crew 1 (ended)"}
    assert content["m.room.topic"] == {"topic": "Crew 1 of Camp, ended"}
    assert content["org.gathering_gateway.group"] == {"key": "camp/crew-1"}
    members = {
        e["state_key"]: e["content"]["membership"] for e in state if e["type"] == "m.room.member"
    }
    assert members == {bot_user.user_id: "join", a.user_id: "invite", b.user_id: "invite"}


async def test_organiser_commands_allowed_for_organisers_refused_for_others(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    bot_user, org, stranger, maya = (synapse.new_user(n) for n in ("bot", "org", "eve", "maya"))
    org_client, eve_client, maya_client = [await matrix_client(u) for u in (org, stranger, maya)]
    created = await org_client.room_create(
        name="Organisers", invite=[bot_user.user_id, stranger.user_id]
    )
    assert isinstance(created, RoomCreateResponse)
    room = created.room_id
    await eve_client.join(room)
    org_inbox, eve_inbox, maya_inbox = (
        Inbox(c, bot_user.user_id) for c in (org_client, eve_client, maya_client)
    )
    settings = settings_for(synapse, bot_user, tmp_path / "mx", organisers_room=room)
    flows = {"registration": Echo(), "organisers": Organisers()}
    async with running_bot(tmp_path, settings, organisers=[org.user_id], flows=flows):
        await org_client.sync(timeout=0)
        await _wait_joined(org_client, room, bot_user.user_id)
        dm = await open_dm(maya_client, bot_user.user_id)
        await _wait_joined(maya_client, dm, bot_user.user_id)
        await say(maya_client, dm, text("register"))
        await maya_inbox.wait_body("echo: register")

        await eve_client.sync(timeout=0)
        await say(eve_client, room, text("!status"))
        refusal = await eve_inbox.wait_for(lambda e: "only the organisers" in _body(e))
        assert refusal["room_id"] == room

        await say(org_client, room, text("!status"))
        status = await org_inbox.wait_for(lambda e: _body(e).startswith("gathering"))
        assert "camp" in _body(status)

        # Crew operations answer from the same code as `gateway crews` (this camp has no
        # [crews] section, and says so).
        await say(org_client, room, text("!crews camp propose"))
        await org_inbox.wait_for(lambda e: "has no [crews] section" in _body(e))

        await say(org_client, room, text("!debrief camp"))
        await org_inbox.wait_for(lambda e: "has no [debrief] section" in _body(e))
        await say(org_client, room, text("!travel camp"))
        await org_inbox.wait_for(lambda e: "has no [travel] section" in _body(e))

        await say(org_client, room, text("!export camp"))
        export = await org_inbox.wait_for(lambda e: e["content"].get("msgtype") == "m.file")
        assert export["content"]["body"] == "camp-registrations.csv"

        await say(org_client, room, text("!announce camp Bring warm boots"))
        await org_inbox.wait_for(lambda e: "would go to 1 registered person" in _body(e))
        await say(org_client, room, text("!confirm"))
        await org_inbox.wait_for(lambda e: "on its way to 1 registered person" in _body(e))
        news = await maya_inbox.wait_for(lambda e: "Bring warm boots" in _body(e))
        assert news["room_id"] == dm
    assert not any("Bring warm boots" in _body(e) for e in eve_inbox.events)


def _body(event: dict[str, Any]) -> str:
    return str(event.get("content", {}).get("body", ""))


async def test_a_message_over_the_event_size_limit_arrives_in_parts_once(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    """A summary over the homeserver's 64 KiB event limit was marked undeliverable and the
    person heard nothing. It is sent in parts, in order; a resend duplicates none."""
    bot_user, maya = synapse.new_user("bot"), synapse.new_user("maya")
    client = await matrix_client(maya)
    paragraphs = [f"Answer {n}: " + "word " * 400 for n in range(40)]  # ~80 KB
    body = "\n\n".join(paragraphs)
    async with running_bot(tmp_path, settings_for(synapse, bot_user, tmp_path / "mx")) as bot:
        first = await bot.transport.send(item("long", maya.user_id, body))
        again = await bot.transport.send(item("long", maya.user_id, body))
        assert again == first
        room = await bot.transport.rooms.direct_room(maya.user_id)
        await client.join(room)
        history = await room_history(client, room, bot_user.user_id)
    bodies = [e["content"]["body"] for e in history if e["type"] == "m.room.message"]
    assert len(bodies) >= 3 and all(len(b.encode()) <= 24_000 for b in bodies)
    assert " ".join(" ".join(bodies).split()) == " ".join(body.split())

"""A participant on a real channel, for the whole-story tests (debrief, travel, crews).

What the gateway hands the engine is written directly where the channel is proven elsewhere
(registration); what people then see and answer goes over the real servers: a Matrix client
reading the bot's messages in its DM, a Dovecot mailbox searched for the mail that says
something.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from nio import AsyncClient

from gateway.core.engine import Engine
from gateway.model import Channel, Identity, InboundMessage
from tests.kit import email as kit
from tests.kit.email_participant import Participant, plain_text
from tests.kit.engine import as_reply, channel_of, inbound
from tests.kit.matrix import room_history, sync_until
from tests.servers import MatrixUser


def says(identity: Identity, text: str = "", **fields: Any) -> InboundMessage:
    """What the person's channel would hand the engine now (the transports are proven in
    tests/wire; here they only carry the gateway's side of the conversation)."""
    return inbound(
        identity, text, at=datetime.now(UTC), external_id=f"e2e-{uuid.uuid4().hex}", **fields
    )


async def register(
    engine: Engine, identity: Identity, channel: Channel, answers: Sequence[str]
) -> None:
    """Registration through the engine (it is proven on the wire elsewhere; here it only has
    to have happened): hello, the answers (one by one in a chat, one form by mail), yes."""
    assert channel == channel_of(identity)
    await engine.handle(says(identity, "hello"))
    if channel == Channel.MATRIX:
        for answer in answers:
            await engine.handle(says(identity, answer))
    else:
        numbered = dict(enumerate(answers, start=1))
        await engine.handle(await as_reply(engine, says(identity, answers=numbered)))
    await engine.handle(await as_reply(engine, says(identity, "yes")))


async def dm_with_bot(client: AsyncClient) -> str:
    """The direct room the bot opened with the client, joined."""
    await sync_until(client, lambda: bool(client.invited_rooms) or bool(client.rooms))
    room = next(iter({**client.invited_rooms, **client.rooms}))
    await client.join(room)
    await sync_until(client, lambda: room in client.rooms)
    return room


async def until_said(
    client: AsyncClient, bot: MatrixUser, room: str, done: Callable[[list[str]], bool]
) -> list[str]:
    """The bot's messages in the room, once `done` holds for them."""
    said: list[str] = []

    async def check() -> bool:
        said[:] = await bot_said(client, bot, room)
        return done(said)

    await kit.until(check, limit=60)
    return said


async def mail_saying(person: Participant, text: str) -> EmailMessage:
    """The newest mail whose text has `text` in the person's mailbox, once it arrived."""
    found: list[EmailMessage] = []

    async def arrived() -> bool:
        for raw in person.dovecot.mailbox_messages(person.box.address):
            message = message_from_bytes(raw, policy=policy.default)
            if isinstance(message, EmailMessage) and text in plain_text(message):
                found[:] = [message]
        return bool(found)

    await kit.until(arrived, limit=60)
    return found[0]


async def bot_said(client: AsyncClient, bot: MatrixUser, room_id: str) -> list[str]:
    """The bodies of the bot's messages in a room the client has joined, oldest first."""
    history = await room_history(client, room_id, bot.user_id)
    return [str(e["content"]["body"]) for e in history if e["type"] == "m.room.message"]

"""Sync-side housekeeping of the Matrix transport: filters, invites, departures, gaps and
the crypto chores nio's `sync_forever` would do. Plain functions of the nio client, so the
transport (gateway/channels/matrix/transport.py) reads as the sync loop and the send path."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nio import (
    AsyncClient,
    InviteMemberEvent,
    MegolmEvent,
    MessageDirection,
    RoomMessagesResponse,
    SyncResponse,
)

from gateway.channels.matrix.rooms import RoomDirectory

log = logging.getLogger(__name__)

#: Presence, typing and receipts are noise to the gateway; a generous timeline limit keeps
#: gaps rare, and `backfill` closes the ones that still happen.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "room": {"ephemeral": {"not_types": ["*"]}, "timeline": {"limit": 50}},
}
#: The very first sync only learns the rooms and a position: history from before the bot
#: existed is not the gateway's business.
FIRST_SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "room": {"ephemeral": {"not_types": ["*"]}, "timeline": {"limit": 0}},
}


async def accept_invites(client: AsyncClient, rooms: RoomDirectory, resp: SyncResponse) -> None:
    """Join rooms people invite the bot to; a direct invite becomes their direct room."""
    for room_id, info in resp.rooms.invite.items():
        # nio parses invite state into InviteMemberEvent objects (no raw `source`).
        invite = next(
            (
                e
                for e in info.invite_state
                if isinstance(e, InviteMemberEvent) and e.state_key == client.user_id
            ),
            None,
        )
        joined = await client.join(room_id)
        if not hasattr(joined, "room_id"):
            log.warning("could not join %s: %s", room_id, joined)
            continue
        inviter = invite.sender if invite else None
        is_direct = bool(invite and invite.content.get("is_direct"))
        if is_direct and isinstance(inviter, str):
            await rooms.remember("direct", inviter, room_id)
        log.info("joined %s (invited by %s, direct=%s)", room_id, inviter, is_direct)


async def note_departures(rooms: RoomDirectory, bot: str, room_id: str, events: list[Any]) -> None:
    """People who left a direct room: their next message opens a new one."""
    for event in events:
        source = getattr(event, "source", None)
        if not isinstance(source, dict) or source.get("type") != "m.room.member":
            continue
        content = source.get("content")
        gone = isinstance(content, dict) and content.get("membership") in ("leave", "ban")
        who = source.get("state_key")
        if gone and isinstance(who, str) and who != bot:
            await rooms.forget_direct(who, room_id)


async def backfill(client: AsyncClient, room_id: str, prev_batch: str, since: str) -> list[Any]:
    """Events a limited (gappy) timeline left out, between our last position and the gap."""
    events: list[Any] = []
    start: str | None = prev_batch
    while start:
        resp = await client.room_messages(
            room_id, start=start, end=since, direction=MessageDirection.back, limit=100
        )
        if not isinstance(resp, RoomMessagesResponse) or not resp.chunk:
            break
        events.extend(resp.chunk)
        start = resp.end if resp.end != start else None
    events.reverse()
    if client.olm:
        events = [_try_decrypt(client, e) for e in events]
    log.info("filled a gap of %d events in %s", len(events), room_id)
    return events


def _try_decrypt(client: AsyncClient, event: Any) -> Any:
    if not isinstance(event, MegolmEvent):
        return event
    try:
        return client.decrypt_event(event)
    except Exception:  # undecryptable stays a MegolmEvent and becomes REJECTED
        return event


async def crypto_housekeeping(client: AsyncClient) -> None:
    """What nio's sync_forever would do: keep one-time keys, device lists, sessions current."""
    client = client
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    await client.send_to_device_messages()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass

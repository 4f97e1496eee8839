"""Which Matrix room reaches whom: one direct room per person, one room per group.

The mapping lives in the `matrix_rooms` table so a restart reuses rooms instead of opening new
ones. A direct room is dropped from the table as soon as the person leaves it (seen in sync or
found out before a send), so the next message opens a fresh one: a person who left a room
does not see what is posted there.

A group room is closed when its group ends (a crew after a new round): it keeps its members
and history, since people may go on talking there, but the gateway no longer manages it or
reads it. Group rooms carry their key in a `GROUP_STATE` state event too, so a room can be
told apart from the database alone, without showing the key to people.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import aiohttp
from nio import AsyncClient, ErrorResponse, RoomCreateResponse, RoomPreset, RoomVisibility
from nio.api import Api

from gateway.model import Identity, IdentityKind
from gateway.ports import PermanentError, TransientError
from gateway.store.db import Row, Store, Tx, now_iso
from gateway.store.migrations import Migration

log = logging.getLogger(__name__)

RoomKind = Literal["direct", "group"]
#: What a known room is used for now: a closed group room is remembered but not served.
RoomUse = Literal["direct", "group", "closed"]

MIGRATIONS: list[Migration] = [
    Migration(
        "matrix",
        1,
        "rooms the Matrix transport opened or was invited into",
        """
        CREATE TABLE matrix_rooms (
            kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
            -- direct: the person's Matrix id; group: the group key ("summer-camp/crew-3")
            key TEXT NOT NULL,
            room_id TEXT NOT NULL,
            -- group: Matrix ids invited so far, so a new crew member is invited exactly once
            members TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            PRIMARY KEY (kind, key)
        );
        CREATE INDEX matrix_rooms_room ON matrix_rooms(room_id);
        """,
    ),
    Migration(
        "matrix",
        2,
        "group rooms whose group ended (closed) are kept but no longer served",
        "ALTER TABLE matrix_rooms ADD COLUMN closed_at TEXT;",
    ),
]

#: The state event naming a group room's key (for operators and tools, not for people).
GROUP_STATE = "org.gathering_gateway.group"

#: The reason shown to someone removed from a crew room after the crews changed.
LEFT_GROUP = "The crews changed: you are no longer in this one."

#: Power level of organisers in group rooms: moderators (kick, redact), below the bot.
ORGANISER_POWER = 50
ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


def raise_for(resp: object, what: str) -> None:
    """Turn a nio error response into the outbox's Transient/Permanent errors.

    Rate limits and server trouble are worth retrying; a forbidden room or an unknown user
    is not. An invalid token is treated as transient: every send fails the same way until an
    operator fixes the config, and burying the whole queue meanwhile would lose messages.
    """
    if not isinstance(resp, ErrorResponse):
        return
    code = resp.status_code or ""
    status = getattr(getattr(resp, "transport_response", None), "status", 0) or 0
    message = f"{what}: {resp}"
    if code == "M_LIMIT_EXCEEDED" or status == 429:
        retry = resp.retry_after_ms / 1000 if resp.retry_after_ms else None
        raise TransientError(message, retry_after=retry)
    if status >= 500 or not status or code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
        raise TransientError(message)
    raise PermanentError(message)


class RoomDirectory:
    """Finds or opens the room for a person or a group; keeps `matrix_rooms` current."""

    def __init__(
        self,
        client: AsyncClient,
        store: Store,
        *,
        e2ee: bool,
        organisers: Iterable[str] = (),
    ) -> None:
        self.client = client
        self.store = store
        self.e2ee = e2ee
        self.organisers = tuple(sorted(set(organisers)))
        #: Rooms opened by this process that sync may not have reported yet.
        self.fresh: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._direct_lock = asyncio.Lock()

    # -- lookups ------------------------------------------------------------------------

    async def kind_of(self, room_id: str) -> tuple[RoomUse, str] | None:
        async with self.store.read() as tx:
            row = await tx.one(
                "SELECT CASE WHEN closed_at IS NULL THEN kind ELSE 'closed' END AS use, key"
                " FROM matrix_rooms WHERE room_id = ?",
                (room_id,),
            )
        return (row["use"], row["key"]) if row else None

    async def remember(self, kind: RoomKind, key: str, room_id: str) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO matrix_rooms (kind, key, room_id, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET room_id = excluded.room_id,"
                " members = '[]', created_at = excluded.created_at, closed_at = NULL",
                (kind, key, room_id, now_iso()),
            )

    async def forget_direct(self, mxid: str, room_id: str) -> None:
        """The person left `room_id`: the next message to them opens a new direct room."""
        async with self.store.transaction() as tx:
            gone = await tx.execute(
                "DELETE FROM matrix_rooms WHERE kind = 'direct' AND key = ? AND room_id = ?",
                (mxid, room_id),
            )
        if gone:
            log.info("%s left their direct room %s; a new one opens next time", mxid, room_id)

    async def forget_room(self, room_id: str) -> None:
        """The bot itself left or was removed from `room_id`."""
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM matrix_rooms WHERE room_id = ?", (room_id,))

    # -- direct rooms -------------------------------------------------------------------

    async def direct_room(self, mxid: str) -> str:
        """The person's direct room, opened (and flagged in `m.direct`) when needed."""
        async with self._lock(f"direct:{mxid}"):
            async with self.store.read() as tx:
                row = await tx.one(
                    "SELECT room_id FROM matrix_rooms WHERE kind = 'direct' AND key = ?", (mxid,)
                )
            if row and self._still_there(row["room_id"], mxid):
                return str(row["room_id"])
            if row:
                await self.forget_direct(mxid, row["room_id"])
            await self._check_user_exists(mxid)
            room_id = await self._create(
                is_direct=True, invite=[mxid], preset=RoomPreset.trusted_private_chat
            )
            await self.remember("direct", mxid, room_id)
            await self._flag_direct(mxid, room_id)
            return room_id

    def _still_there(self, room_id: str, mxid: str) -> bool:
        """Whether the person is joined or invited, as far as synced state tells.

        A room this process just created may not have come through sync yet: trust it.
        """
        room = self.client.rooms.get(room_id)
        if room is None:
            return room_id in self.fresh or not self.client.rooms
        return mxid in room.users or mxid in room.invited_users

    async def _check_user_exists(self, mxid: str) -> None:
        """Refuse, permanently, to open a room for a Matrix id the homeserver does not know."""
        resp = await self.client.get_profile(mxid)
        if not isinstance(resp, ErrorResponse):
            return
        status = getattr(getattr(resp, "transport_response", None), "status", 0)
        # Synapse answers 404 for an unknown local user (errcode M_NOT_FOUND, or M_UNKNOWN
        # "No row found" in some versions); other errors (federation off…) prove nothing.
        if status == 404 or resp.status_code == "M_NOT_FOUND":
            raise PermanentError(f"unknown Matrix user {mxid}")

    async def _flag_direct(self, mxid: str, room_id: str) -> None:
        """Add the room to the bot's `m.direct` account data (nio does not do this).

        Clients use m.direct to show the room as a direct chat with the person. A failure here
        only affects how the room is displayed, so it is logged, not raised.
        """
        async with self._direct_lock:
            try:
                current = await self._account_data("m.direct")
                rooms = [r for r in current.get(mxid, []) if isinstance(r, str)]
                if room_id not in rooms:
                    current[mxid] = [*rooms, room_id]
                    await self._put_account_data("m.direct", current)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("could not update m.direct for %s: %s", mxid, exc)

    async def _account_data(self, kind: str) -> dict[str, Any]:
        path = Api._build_path(["user", self.client.user_id, "account_data", kind])
        resp = await self.client.send("GET", path, headers=self._auth())
        if resp.status == 404:
            return {}
        resp.raise_for_status()
        data = await resp.json()
        return data if isinstance(data, dict) else {}

    async def _put_account_data(self, kind: str, content: dict[str, Any]) -> None:
        path = Api._build_path(["user", self.client.user_id, "account_data", kind])
        resp = await self.client.send("PUT", path, json.dumps(content), headers=self._auth())
        resp.raise_for_status()

    def _auth(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.client.access_token}",
            "Content-Type": "application/json",
        }

    # -- group rooms --------------------------------------------------------------------

    async def group_room(self, key: str, name: str, topic: str, members: Sequence[str]) -> str:
        """The group's room, created on first use; members not yet invited are invited now,
        and people no longer in the group (a crew changed after approval) are removed."""
        async with self._lock(f"group:{key}"):
            row = await self._group_row(key)
            if row is None:
                # The creator (the bot) is not listed: room version 12 gives creators
                # unlimited power and refuses them in `users`; older versions default them to 100.
                power = {"users": {o: ORGANISER_POWER for o in self.organisers}}
                room_id = await self._create(
                    name=name,
                    topic=topic,
                    invite=list(members),
                    preset=RoomPreset.private_chat,
                    power_level_override=power,
                    state=[{"type": GROUP_STATE, "state_key": "", "content": {"key": key}}],
                )
                await self.remember("group", key, room_id)
                await self._set_members(key, members)
                return room_id
            if row["closed_at"] is not None:
                # Keys are never reused (a new round has new ones): a late message must not
                # invite anyone into, or remove anyone from, a room left to its members.
                raise PermanentError(f"the room of {key} was closed when the group ended")
            room_id, invited = str(row["room_id"]), set(json.loads(row["members"]))
            new = [m for m in members if m not in invited]
            for mxid in new:
                resp = await self.client.room_invite(room_id, mxid)
                if isinstance(resp, ErrorResponse) and resp.status_code != "M_FORBIDDEN":
                    raise_for(resp, f"inviting {mxid} to {key}")
                # M_FORBIDDEN: already a member (or banned by a moderator): nothing to do.
            gone = sorted(invited - set(members))
            for mxid in gone:
                resp = await self.client.room_kick(room_id, mxid, reason=LEFT_GROUP)
                if isinstance(resp, ErrorResponse) and resp.status_code != "M_FORBIDDEN":
                    raise_for(resp, f"removing {mxid} from {key}")
                # M_FORBIDDEN: they already left the room themselves.
            if new or gone:
                await self._set_members(key, members)
            return room_id

    async def close_group(self, key: str, name: str, topic: str) -> str:
        """Mark the group's room closed and rename it; returns it for the closing notice.

        Nobody is removed and nothing is deleted. Repeating this after a crash repeats
        identical state events, which change nothing.
        """
        async with self._lock(f"group:{key}"):
            row = await self._group_row(key)
            if row is None:
                raise PermanentError(f"{key} has no room to close")
            room_id = str(row["room_id"])
            async with self.store.transaction() as tx:
                await tx.execute(
                    "UPDATE matrix_rooms SET closed_at = COALESCE(closed_at, ?)"
                    " WHERE kind = 'group' AND key = ?",
                    (now_iso(), key),
                )
            for event_type, content in (
                ("m.room.name", {"name": name}),
                ("m.room.topic", {"topic": topic}),
            ):
                if next(iter(content.values())):
                    resp = await self.client.room_put_state(room_id, event_type, content)
                    raise_for(resp, f"renaming the closed room of {key}")
            return room_id

    async def _group_row(self, key: str) -> Row | None:
        async with self.store.read() as tx:
            return await tx.one(
                "SELECT room_id, members, closed_at FROM matrix_rooms"
                " WHERE kind = 'group' AND key = ?",
                (key,),
            )

    async def _set_members(self, key: str, members: Iterable[str]) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE matrix_rooms SET members = ? WHERE kind = 'group' AND key = ?",
                (json.dumps(sorted(set(members))), key),
            )

    async def _create(self, state: Sequence[dict[str, Any]] = (), **options: Any) -> str:
        initial_state = [ENCRYPTION_STATE, *state] if self.e2ee else list(state)
        resp = await self.client.room_create(
            visibility=RoomVisibility.private, initial_state=initial_state, **options
        )
        raise_for(resp, "creating a room")
        assert isinstance(resp, RoomCreateResponse)
        self.fresh.add(resp.room_id)
        return str(resp.room_id)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())


async def forget_identities(tx: Tx, identities: Sequence[Identity], names: Sequence[str]) -> int:
    """The erase hook of the Matrix channel: it names people by Matrix id in its room
    directory and in events held for a late room key."""
    mxids = [i.address for i in identities if i.kind == IdentityKind.MATRIX]
    pending = await tx.has_table("matrix_pending")
    rooms = await tx.has_table("matrix_rooms")
    changed = 0
    for mxid in mxids:
        if pending:
            changed += await tx.execute("DELETE FROM matrix_pending WHERE sender = ?", (mxid,))
        if not rooms:
            continue
        changed += await tx.execute(
            "DELETE FROM matrix_rooms WHERE kind = 'direct' AND key = ?", (mxid,)
        )
        changed += await tx.execute(
            "UPDATE matrix_rooms SET members = (SELECT json_group_array(value)"
            " FROM json_each(members) WHERE value != ?) WHERE kind = 'group'"
            " AND EXISTS (SELECT 1 FROM json_each(members) WHERE value = ?)",
            (mxid, mxid),
        )
    return changed

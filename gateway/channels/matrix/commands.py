"""Organisers' commands in Matrix: "!word …" in the organisers' room (`matrix.organisers_room`)
or in a direct room with the bot.

Such a line becomes a COMMAND whose caller is the room, for the organisers' router
(gateway/ops/router.py), which decides who may do what and answers through the outbox like
any message — so a replayed sync neither runs nor answers a command twice. The channel only
recognises the line and knows the organisers' room.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from nio import AsyncClient, RoomResolveAliasResponse

from gateway.model import Caller, Channel, InboundKind, InboundMessage, is_command_line

log = logging.getLogger(__name__)


class OrganiserCommands:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        #: The organisers' room id, once `resolve_room` has turned an alias into it.
        self.room_id: str | None = None

    async def resolve_room(self, configured: str | None) -> None:
        if not configured or not configured.startswith("#"):
            self.room_id = configured
            return
        resp = await self.client.room_resolve_alias(configured)
        if isinstance(resp, RoomResolveAliasResponse):
            self.room_id = resp.room_id
        else:
            log.error("organisers' room %s cannot be resolved: %s", configured, resp)

    @staticmethod
    def command(message: InboundMessage, room_id: str) -> InboundMessage | None:
        """The COMMAND a "!word …" message is, answered in the room it was written in."""
        if message.kind != InboundKind.TEXT or not is_command_line(message.text):
            return None
        return replace(message, kind=InboundKind.COMMAND, caller=Caller(Channel.MATRIX, room_id))

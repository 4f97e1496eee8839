"""Organisers' commands in Matrix: `!status`, `!export`, `!announce` with `!confirm`/`!cancel`,
and `!crews` (propose, approve, pin… — the `gateway crews` operations).

Commands are accepted in the organisers' room (`matrix.organisers_room`) and in an
organiser's direct room with the bot, from people listed as organisers only; anyone else
gets a short refusal and a log line. Read-only commands are answered here, directly, with a
txn_id derived from the command's event id (a replayed sync does not answer twice).
`!announce` changes things and reaches people, so it goes through the engine as a COMMAND to
the gathering's "organisers" flow run, and its messages through the outbox.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nio import RoomResolveAliasResponse, UploadResponse

from flows.config import GatheringConfig
from gateway.channels.matrix.codec import file_content, notice_content, txn_id
from gateway.model import (
    GATHERING_SUBJECT,
    Channel,
    InboundKind,
    InboundMessage,
    Target,
)
from gateway.ops import travel as travel_ops
from gateway.ops.crews.commands import handle_crews_command
from gateway.ops.debrief import NoDebrief, collect, summary, to_html
from gateway.ops.reports import export_csv, format_status, status_report
from gateway.ports import Inbound, SendError
from gateway.store.db import Store

if TYPE_CHECKING:
    from gateway.channels.matrix.transport import MatrixTransport


class OrganisingInbound(Inbound, Protocol):
    """The engine as organisers' commands see it: where messages go, and what it runs."""

    store: Store
    gatherings: dict[str, GatheringConfig]


log = logging.getLogger(__name__)

COMMANDS = (
    "help",
    "status",
    "export",
    "announce",
    "confirm",
    "cancel",
    "crews",
    "debrief",
    "travel",
)
FLOW = "organisers"
HELP = (
    "Commands:\n"
    "  !status                       registrations per gathering, outbox health\n"
    "  !export GATHERING             the gathering's registrations as a CSV file\n"
    "  !announce GATHERING text…     a message to everyone registered (asks to confirm)\n"
    "  !confirm / !cancel            send or drop the pending announcement\n"
    "  !crews GATHERING propose|approve|pin P N|move P N|swap P Q|unpin P|update|round|roster\n"
    "  !debrief GATHERING            the debrief so far: a summary and the report (HTML)\n"
    "  !travel GATHERING [plan|approve]  the travel plan and its map; plan now; approve it"
)


class OrganiserCommands:
    def __init__(self, transport: MatrixTransport, organisers: frozenset[str]) -> None:
        self.transport = transport
        self.organisers = organisers
        #: The crew overrides file of a gathering (set by the app, as the CLI finds it).
        self.crew_overrides: Callable[[str], Path | None] = lambda slug: None
        #: The organisers' room id, once `resolve_room` has turned an alias into it.
        self.room_id: str | None = None
        #: Crew solves run beside the sync loop (they take seconds); kept so they finish.
        self._crews_tasks: set[asyncio.Task[None]] = set()

    async def resolve_room(self, configured: str | None) -> None:
        if not configured or not configured.startswith("#"):
            self.room_id = configured
            return
        resp = await self.transport.client.room_resolve_alias(configured)
        if isinstance(resp, RoomResolveAliasResponse):
            self.room_id = resp.room_id
        else:
            log.error("organisers' room %s cannot be resolved: %s", configured, resp)

    @staticmethod
    def is_command(message: InboundMessage) -> bool:
        if message.kind != InboundKind.TEXT or not message.text.startswith("!"):
            return False
        word = message.text[1:].split(maxsplit=1)[0].lower() if len(message.text) > 1 else ""
        return word in COMMANDS

    async def handle(
        self, message: InboundMessage, room_id: str, engine: OrganisingInbound
    ) -> InboundMessage | None:
        """Answer a command, or return the COMMAND message the engine must apply."""
        sender = message.sender.address if message.sender else ""
        word, _, rest = message.text[1:].partition(" ")
        word, rest = word.lower(), rest.strip()
        if sender not in self.organisers:
            log.warning("refused !%s from %s in %s: not an organiser", word, sender, room_id)
            await self._say(room_id, message, "Sorry, only the organisers can use commands.")
            return None
        try:
            if word == "help":
                await self._say(room_id, message, HELP)
            elif word == "status":
                report = await status_report(engine.store, engine.gatherings)
                await self._say(room_id, message, format_status(report))
            elif word == "export":
                await self._export(room_id, message, rest, engine)
            elif word == "debrief":
                await self._debrief(room_id, message, rest, engine)
            elif word == "travel":
                await self._travel(room_id, message, rest, engine)
            elif word == "crews":
                task = asyncio.create_task(self._crews(room_id, message, rest, engine))
                self._crews_tasks.add(task)
                task.add_done_callback(self._crews_tasks.discard)
            else:
                return await self._to_flow(word, rest, room_id, message, engine)
        except (SendError, OSError) as exc:
            # The answer is lost, not the sync: the organiser can simply ask again.
            log.warning("could not answer !%s in %s: %s", word, room_id, exc)
        return None

    async def _to_flow(
        self, word: str, rest: str, room_id: str, message: InboundMessage, engine: OrganisingInbound
    ) -> InboundMessage | None:
        slug, _, text = rest.partition(" ")
        if word in ("confirm", "cancel") and not slug:
            slug = await _pending_gathering(engine) or ""
            if not slug:
                await self._say(room_id, message, "There is no announcement waiting.")
                return None
        if slug not in engine.gatherings:
            known = ", ".join(sorted(engine.gatherings)) or "none"
            await self._say(room_id, message, f"Unknown gathering {slug!r} (known: {known}).")
            return None
        if word == "announce" and not text.strip():
            await self._say(room_id, message, "Usage: !announce GATHERING text of the message")
            return None
        return InboundMessage(
            channel=Channel.MATRIX,
            external_id=message.external_id,
            kind=InboundKind.COMMAND,
            received_at=message.received_at,
            sender=message.sender,
            text=word,
            target=Target(slug, FLOW, GATHERING_SUBJECT),
            payload={
                "text": text.strip(),
                "room": room_id,
                "by": message.sender.address if message.sender else "",
            },
            meta=message.meta,
        )

    async def _export(
        self, room_id: str, message: InboundMessage, slug: str, engine: OrganisingInbound
    ) -> None:
        gathering = engine.gatherings.get(slug)
        if gathering is None:
            known = ", ".join(sorted(engine.gatherings)) or "none"
            await self._say(room_id, message, f"Usage: !export GATHERING (known: {known})")
            return
        data = (await export_csv(engine.store, gathering)).encode()
        await self._upload(room_id, message, f"{slug}-registrations.csv", data, "text/csv")

    async def _debrief(
        self, room_id: str, message: InboundMessage, slug: str, engine: OrganisingInbound
    ) -> None:
        gathering = engine.gatherings.get(slug)
        if gathering is None:
            known = ", ".join(sorted(engine.gatherings)) or "none"
            await self._say(room_id, message, f"Usage: !debrief GATHERING (known: {known})")
            return
        try:
            report = await collect(engine.store, gathering)
        except NoDebrief as exc:
            await self._say(room_id, message, str(exc))
            return
        await self._say(room_id, message, summary(report))
        data = to_html(report).encode()
        await self._upload(room_id, message, f"{slug}-debrief.html", data, "text/html")

    async def _travel(
        self, room_id: str, message: InboundMessage, rest: str, engine: OrganisingInbound
    ) -> None:
        """`!travel GATHERING`: the stored plan and its map; `plan` asks for a new one (the
        service's job runner makes it), `approve` lets its proposals go out."""
        slug, _, action = rest.partition(" ")
        if slug not in engine.gatherings or action.strip() not in ("", "plan", "approve"):
            known = ", ".join(sorted(engine.gatherings)) or "none"
            await self._say(
                room_id, message, f"Usage: !travel GATHERING [plan|approve] (known: {known})"
            )
            return
        # The wired object is the engine (see _crews).
        wired: Any = engine
        try:
            if action.strip():
                await travel_ops.command(wired, slug, action.strip())
            if action.strip() == "plan":
                await self._say(room_id, message, "Planning; `!travel " + slug + "` shows it.")
                return
            plan = await travel_ops.load(wired, slug)
        except travel_ops.TravelError as exc:
            await self._say(room_id, message, str(exc))
            return
        await self._say(room_id, message, travel_ops.describe(plan))
        page = travel_ops.map_html(plan).encode()
        await self._upload(room_id, message, f"{slug}-travel.html", page, "text/html")

    async def _upload(
        self, room_id: str, message: InboundMessage, name: str, data: bytes, mime: str
    ) -> None:
        """Post a file in the room (encrypted where the room is)."""
        client = self.transport.client
        room = client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted)
        resp, keys = await client.upload(
            io.BytesIO(data),
            content_type=mime,
            filename=name,
            encrypt=encrypt,
            filesize=len(data),
        )
        if not isinstance(resp, UploadResponse):
            await self._say(room_id, message, f"{name} could not be uploaded: {resp}")
            return
        content: dict[str, Any] = file_content(name, resp.content_uri, len(data), mime)
        if keys:
            # Encrypted rooms carry the file's key in the event instead of a plain url.
            content.pop("url")
            content["file"] = {**keys, "url": resp.content_uri}
        await self.transport.send_event(room_id, "m.room.message", content, _txn(message, name))

    async def _crews(
        self, room_id: str, message: InboundMessage, rest: str, engine: OrganisingInbound
    ) -> None:
        """`!crews GATHERING …`: the same operations as `gateway crews` (the solver runs in a
        worker thread), answered when done so participants' messages are not held up."""
        slug, _, args = rest.partition(" ")
        if slug not in engine.gatherings:
            known = ", ".join(sorted(engine.gatherings)) or "none"
            await self._say(room_id, message, f"Usage: !crews GATHERING … (known: {known})")
            return
        try:
            # The wired object is the engine; crews operations still take it whole until
            # room commands go through the one organiser-command router.
            reply = await handle_crews_command(
                engine,  # type: ignore[arg-type]
                slug,
                [args] if args else [],
                overrides=self.crew_overrides(slug),
            )
            await self._say(room_id, message, reply)
        except (SendError, OSError) as exc:
            log.warning("could not answer !crews in %s: %s", room_id, exc)

    async def _say(self, room_id: str, message: InboundMessage, text: str) -> None:
        await self.transport.send_event(
            room_id, "m.room.message", notice_content(text), _txn(message, "reply")
        )


def _txn(message: InboundMessage, part: str) -> str:
    return txn_id(f"matrix-command:{message.external_id}:{part}")


async def _pending_gathering(engine: OrganisingInbound) -> str | None:
    """The gathering whose announcement waits for `!confirm` (the most recent one)."""
    async with engine.store.read() as tx:
        row = await tx.one(
            "SELECT gathering FROM flow_runs WHERE flow = ? AND person_id = 0"
            " AND json_extract(state, '$.pending') IS NOT NULL ORDER BY updated_at DESC",
            (FLOW,),
        )
    return str(row[0]) if row else None

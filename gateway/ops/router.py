"""The one router for organisers' commands, wherever they come from.

The `gateway` command, the organisers' Matrix room (or an organiser's direct room with the
bot) and mail from an organiser's address all say the same words — `status`, `export camp`,
`crews camp propose`… (with a leading "!" in chat and mail). A channel hands such a line to
the engine as a COMMAND with a `caller` and no target, and the engine gives it to `Router`,
outside its own transactions (reports and solving take time).

Read-only commands are answered here. Commands that change something become COMMANDs to a
flow's gathering-level run, through the engine like every other change; the flow answers
the caller itself (`Outcome.reply`). Every answer goes through the outbox to the room or
address the command came from, and is queued in the transaction that records the command in
the inbox: a redelivered command is neither run nor answered twice. The terminal gets its
answer back as the result.

Who may: the organisers listed in the service config, and the terminal (it has the
database). Mail can be forged, so by mail a command that changes something must come as a
reply to a message of ours (an organiser can read their own mail; a forger cannot); read-only
answers go to the organiser's listed address, never to the forger.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.core.engine import Engine, Handled
from gateway.model import (
    Attachment,
    Caller,
    Channel,
    Identity,
    InboundKind,
    InboundMessage,
)
from gateway.ops import debrief as debrief_ops
from gateway.ops import travel as travel_ops
from gateway.ops.commands import send_command
from gateway.ops.crews import commands as crews_ops
from gateway.ops.reports import export_csv, format_status, status_report
from gateway.ports import SetAsideReader

HELP = """Commands (in chat and mail with a leading "!"):
  status                        registrations per gathering, outbox health
  export GATHERING              the gathering's registrations as a CSV file
  announce GATHERING text…      a message to everyone registered (asks to confirm)
  confirm / cancel [GATHERING]  send or drop the pending announcement
  crews GATHERING propose [--fresh] | approve | pin P N | move P N | swap P Q | unpin P
                | update | round | show | roster   (solving: --seconds N --seed N;
                the proposal follows when it is solved)
  debrief GATHERING [public]    the debrief so far: a summary and the report (HTML, Markdown, CSV)
  travel GATHERING [plan|approve]  the travel plan and its map; plan now; approve it"""

#: Words whose commands change something: by mail they must prove the sender (see above).
CHANGING = frozenset({"announce", "confirm", "cancel", "crews", "travel"})
#: Sub-commands of those that only read.
READING = frozenset({"show", "roster", ""})


#: An announcement reaches everyone registered: a pasted file or a mistake should not.
MAX_ANNOUNCEMENT = 10_000


class Refused(Exception):
    """The command cannot run as given; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the router says back: text, and files (a CSV export, a report, a map)."""

    text: str = ""
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    message: InboundMessage
    word: str
    args: list[str]
    #: The rest of the line after the word and the gathering, as written (announcements).
    rest: str

    @property
    def key(self) -> str:
        return f"{self.message.channel.value}:{self.message.external_id}"


Command = Callable[["Router", Request], Awaitable[Answer]]


class Router:
    def __init__(
        self,
        engine: Engine,
        *,
        crew_overrides: Callable[[str], Path | None] = lambda slug: None,
        set_aside: SetAsideReader | None = None,
    ) -> None:
        self.engine = engine
        #: What a channel set aside (mail that kept failing), for `status`.
        self.set_aside = set_aside
        #: The crew overrides file of a gathering (beside its gathering file).
        self.crew_overrides = crew_overrides
        self.commands: Mapping[str, Command] = {
            "help": Router._help,
            "status": Router._status,
            "export": Router._export,
            "announce": Router._announce,
            "confirm": Router._announce,
            "cancel": Router._announce,
            "crews": Router._crews,
            "debrief": Router._debrief,
            "travel": Router._travel,
        }

    # -- the way in ---------------------------------------------------------------------

    async def handle(self, message: InboundMessage) -> Handled:
        """Run one command from a channel (the engine's `desk`): answered through the outbox
        and recorded in the inbox with its answer."""
        if await self.engine.seen(message):
            return Handled(duplicate=True)
        request = parse(message)
        sender = message.sender
        organiser = sender is not None and Identity(sender.kind, sender.address) in (
            self.engine.organisers
        )
        if request.word not in self.commands and not organiser:
            # Someone's "!!! can't make it" is not a command: it is what they said (by mail,
            # a subject like "!Important" is no part of what they said).
            text = message.text
            if message.meta.get("command_in") == "subject":
                text = text.partition("\n")[2]
            said = replace(message, kind=InboundKind.TEXT, caller=None, text=text)
            return await self.engine.handle(said)
        try:
            if not organiser:
                raise Refused("Sorry, only the organisers can use commands.")
            if request.word not in self.commands:
                raise Refused(f"Unknown command {request.word!r}.\n\n{HELP}")
            if await self._needs_proof(request):
                raise Refused(
                    f"Commands that change something must come as a reply to a message from"
                    f" the gateway (anyone can put your address in From:). Reply to this"
                    f" message with the command to run it:\n\n  !{message.text.lstrip('!')}"
                )
            answer = await self.commands[request.word](self, request)
            outcome, detail = "applied", request.word
        except Refused as exc:
            answer, outcome, detail = Answer(str(exc)), "refused", str(exc)[:200]
        return await self.engine.record_command(
            message, outcome, detail, answer.text, answer.attachments
        )

    async def run(self, line: str) -> Answer:
        """A command from the terminal: the answer, with what the flows replied."""
        now = self.engine.clock()
        message = InboundMessage(
            channel=Channel.INTERNAL,
            external_id=f"cli:{now.isoformat()}:{line}",
            kind=InboundKind.COMMAND,
            received_at=now,
            text=line,
            caller=Caller(Channel.INTERNAL),
        )
        request = parse(message)
        if request.word not in self.commands:
            raise Refused(f"Unknown command {request.word!r}.\n\n{HELP}")
        return await self.commands[request.word](self, request)

    async def _needs_proof(self, request: Request) -> bool:
        if request.message.channel != Channel.EMAIL or request.word not in CHANGING:
            return False
        action = request.args[1].lower() if len(request.args) > 1 else ""
        if request.word in ("crews", "travel") and action in READING:
            return False
        return not await self.engine.replied_to_us(request.message)

    # -- helpers ------------------------------------------------------------------------

    def _gathering(self, request: Request, usage: str) -> str:
        slug = request.args[0] if request.args else ""
        if slug not in self.engine.gatherings:
            known = ", ".join(sorted(self.engine.gatherings)) or "none"
            problem = f"Unknown gathering {slug!r}" if slug else "Which gathering?"
            raise Refused(f"{problem} (known: {known}).\nUsage: {usage}")
        return slug

    async def to_flow(
        self, request: Request, slug: str, flow: str, name: str, payload: Mapping[str, object]
    ) -> Answer:
        """A COMMAND to the gathering's run of `flow`; the flow answers the caller itself
        (here, for the terminal, its replies are the answer)."""
        handled = await self.command(request, slug, flow, name, payload)
        internal = request.message.channel == Channel.INTERNAL
        return Answer("\n".join(handled.replies) if internal else "")

    async def command(
        self, request: Request, slug: str, flow: str, name: str, payload: Mapping[str, object]
    ) -> Handled:
        """Apply the COMMAND `name` to the gathering's run of `flow`, on the organiser's
        behalf: its replies go to the organiser's caller. Each (flow, name) once per
        organiser's message: a redelivery is a duplicate."""
        message = request.message
        return await send_command(
            self.engine,
            slug,
            flow,
            name,
            payload,
            external_id=f"{request.key}/{flow}:{name}",
            caller=message.caller,
            by=message.sender.address if message.sender else "terminal",
        )

    # -- the commands -------------------------------------------------------------------

    async def _help(self, request: Request) -> Answer:
        return Answer(HELP)

    async def _status(self, request: Request) -> Answer:
        report = await status_report(
            self.engine.store, self.engine.gatherings, set_aside=self.set_aside
        )
        return Answer(format_status(report))

    async def _export(self, request: Request) -> Answer:
        slug = self._gathering(request, "export GATHERING")
        text = await export_csv(self.engine.store, self.engine.gatherings[slug])
        rows = max(0, text.count("\n") - 1)
        return Answer(
            f"{self.engine.gatherings[slug].name}: {rows} registration{'s' if rows != 1 else ''}",
            (Attachment(f"{slug}-registrations.csv", "text/csv", text.encode()),),
        )

    async def _announce(self, request: Request) -> Answer:
        word = request.word
        if word in ("confirm", "cancel") and not request.args:
            slug = await pending_announcement(self.engine)
            if slug is None:
                raise Refused("There is no announcement waiting.")
        else:
            usage = f"{word} GATHERING" + (" text…" if word == "announce" else "")
            slug = self._gathering(request, usage)
        if word == "announce" and not request.rest.strip():
            raise Refused("Usage: announce GATHERING text of the message")
        if len(request.rest) > MAX_ANNOUNCEMENT:
            raise Refused(
                f"That announcement has {len(request.rest):,} characters; at most"
                f" {MAX_ANNOUNCEMENT:,} go to everyone (link to a longer text instead)."
            )
        by = request.message.sender.address if request.message.sender else "terminal"
        return await self.to_flow(
            request, slug, "organisers", word, {"text": request.rest.strip(), "by": by}
        )

    async def _crews(self, request: Request) -> Answer:
        slug = self._gathering(request, crews_ops.USAGE)
        terminal = request.message.channel == Channel.INTERNAL
        send = functools.partial(self.command, request, slug, crews_ops.FLOW)
        try:
            said = await crews_ops.handle_crews_command(
                self.engine,
                send,
                slug,
                request.args[1:],
                overrides=self.crew_overrides(slug),
                terminal=terminal,
            )
        except crews_ops.CrewsError as exc:
            raise Refused(str(exc)) from None
        if terminal and said.refused:
            raise Refused(said.text)
        # The flow answered a room or an address itself, through the outbox.
        return Answer(said.text if terminal or not said.answered else "")

    async def _debrief(self, request: Request) -> Answer:
        slug = self._gathering(request, "debrief GATHERING [public]")
        public = [a.lower() for a in request.args[1:]] in (["public"], ["--public"])
        audience = debrief_ops.Audience.PUBLIC if public else debrief_ops.Audience.ORGANISERS
        try:
            report = await debrief_ops.collect(
                self.engine.store, self.engine.gatherings[slug], audience
            )
        except debrief_ops.NoDebrief as exc:
            raise Refused(str(exc)) from None
        stem = f"{slug}-debrief" + ("-public" if public else "")
        files = tuple(
            Attachment(name, _MIME[name.rpartition(".")[2]], text.encode())
            for name, text in debrief_ops.write_all(report, stem).items()
        )
        return Answer(debrief_ops.summary(report), files)

    async def _travel(self, request: Request) -> Answer:
        usage = "travel GATHERING [plan|approve]"
        slug = self._gathering(request, usage)
        action = request.args[1].lower() if len(request.args) > 1 else "show"
        if action not in ("show", "plan", "approve") or len(request.args) > 2:
            raise Refused(f"Usage: {usage}")
        try:
            if action == "plan":
                travel_ops.check(self.engine, slug)
                await self.to_flow(request, slug, "travel", "plan", {})
                return Answer(f"Planning rides for {slug}; the plan follows when it is ready.")
            if action == "approve":
                travel_ops.check(self.engine, slug)
                await self.to_flow(request, slug, "travel", "approve", {})
            plan = await travel_ops.load(self.engine, slug)
        except travel_ops.TravelError as exc:
            raise Refused(str(exc)) from None
        page = travel_ops.map_html(plan).encode()
        return Answer(
            travel_ops.describe(plan), (Attachment(f"{slug}-travel.html", "text/html", page),)
        )


_MIME = {"md": "text/markdown", "html": "text/html", "csv": "text/csv"}


def parse(message: InboundMessage) -> Request:
    """`!crews camp pin "Ana Lima" 2` → word "crews", args ["camp", "pin", "Ana Lima", "2"]."""
    line = message.text.strip().lstrip("!")
    head, _, body = line.partition("\n")
    word, _, tail = head.strip().partition(" ")
    try:
        args = shlex.split(tail)
    except ValueError:  # an unbalanced quote: take the words as they are
        args = tail.split()
    # The announcement's text keeps its lines and quotes: all after the gathering's slug.
    after_slug = tail.strip().partition(" ")[2]
    rest = after_slug + ("\n" + body if body else "")
    return Request(message, word.lower(), args, rest)


async def pending_announcement(engine: Engine) -> str | None:
    """The gathering whose announcement waits for `confirm` (the most recent one)."""
    async with engine.store.read() as tx:
        row = await tx.one(
            "SELECT gathering FROM flow_runs WHERE flow = 'organisers' AND person_id = 0"
            " AND json_extract(state, '$.pending') IS NOT NULL ORDER BY updated_at DESC",
        )
    return str(row[0]) if row else None

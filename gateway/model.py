"""The vocabulary every part of the gateway shares: ids, channels, inbound and outbound messages.

Nothing here does I/O. Transports turn raw input into an `InboundMessage`; flows answer with
`Outgoing` requests; the engine turns those into outbox rows. Keeping these types frozen and
plain means a message can be logged, persisted and replayed without surprises.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NewType

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

PersonId = NewType("PersonId", int)
OutboxId = NewType("OutboxId", int)

#: The subject of a gathering-level flow run (group flows: waiting list, crews, travel matching).
GATHERING_SUBJECT = PersonId(0)


class Channel(StrEnum):
    """Where a message came from or goes to."""

    EMAIL = "email"
    MATRIX = "matrix"
    #: A persisted timer that came due.
    TIMER = "timer"
    #: An event one flow run sends to another inside the same transaction (or a CLI command).
    INTERNAL = "internal"


class InboundKind(StrEnum):
    """What an inbound message means to the engine, decided by the transport's codec."""

    #: Free text from a person (a chat message, the new text of an email reply).
    TEXT = "text"
    #: A structured answer: a poll vote, a reaction, a button. `choice` carries it.
    CHOICE = "choice"
    #: An edit of an earlier message of the person (`replaces` names it).
    EDIT = "edit"
    #: An iCalendar REPLY (Accept/Decline): `calendar` carries it.
    CALENDAR_REPLY = "calendar_reply"
    #: Out-of-office and other automatic replies: recorded, never answered.
    AUTO_REPLY = "auto_reply"
    #: A delivery failure report for one of our messages.
    BOUNCE = "bounce"
    #: A timer came due (`target` names the flow run).
    TICK = "tick"
    #: An organiser command or a flow-to-flow event (`target` names the flow run).
    COMMAND = "command"
    #: Input the codec could not read; `text` says why. The sender is told, nothing applied.
    REJECTED = "rejected"
    #: The person deleted (redacted) an earlier message of theirs (`replaces` names it).
    REDACTION = "redaction"


class IdentityKind(StrEnum):
    EMAIL = "email"
    MATRIX = "matrix"


@dataclass(frozen=True, slots=True)
class Identity:
    """One address of a person: an email address or a Matrix user id. Two identities are the
    same address whatever name came with them (a Matrix event carries none; the service
    file names its organisers)."""

    kind: IdentityKind
    address: str
    display_name: str | None = field(default=None, compare=False)

    @staticmethod
    def email(address: str, display_name: str | None = None) -> Identity:
        return Identity(IdentityKind.EMAIL, address.strip().lower(), display_name)

    @staticmethod
    def matrix(user_id: str, display_name: str | None = None) -> Identity:
        return Identity(IdentityKind.MATRIX, user_id.strip(), display_name)


@dataclass(frozen=True, slots=True)
class Target:
    """A flow run: the gathering, the flow, and the person it is about (0: the gathering)."""

    gathering: str
    flow: str
    person: PersonId = GATHERING_SUBJECT


@dataclass(frozen=True, slots=True)
class CalendarAnswer:
    """A participant's answer to a calendar invite (iMIP REPLY)."""

    uid: str
    partstat: str
    sequence: int = 0
    attendee: str | None = None


#: An organiser's command in chat or mail: "!" and a word ("!status", "!crews camp show").
_COMMAND = re.compile(r"![A-Za-z]")


def is_command_line(text: str) -> bool:
    """Whether `text` starts with an organiser's command (the router decides whose it is)."""
    return _COMMAND.match(text.lstrip()) is not None


@dataclass(frozen=True, slots=True)
class Caller:
    """Where the answer to an organiser's command goes: the Matrix room or the email address
    it came from; INTERNAL (the `gateway` command) gets it back from the engine's result."""

    channel: Channel
    address: str = ""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One normalized input to the engine, from any channel.

    `channel` + `external_id` identify it for deduplication: a transport that redelivers the
    same message (an IMAP fetch after a crash, a replayed sync) produces the same pair.
    """

    channel: Channel
    external_id: str
    kind: InboundKind
    received_at: datetime
    sender: Identity | None = None
    text: str = ""
    #: Inline answers recognised by question number (email replies under numbered questions).
    answers: Mapping[int, str] = field(default_factory=dict)
    #: A structured answer: an option id from a poll, "yes"/"no" from a reaction.
    choice: str | None = None
    calendar: CalendarAnswer | None = None
    #: The external id of our message this one answers (In-Reply-To, m.in_reply_to, poll id).
    in_reply_to: str | None = None
    #: For EDIT: the external id of the person's earlier message being replaced.
    replaces: str | None = None
    #: A verified conversation (email token, known Matrix room) or a timer's/command's run.
    target: Target | None = None
    #: Timer and command arguments.
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: Transport facts worth keeping in the audit log (subject, room id); never personal data
    #: beyond what the message itself carried.
    meta: Mapping[str, str] = field(default_factory=dict)
    #: The questions of our message this one replies to (`Outgoing.questions`), filled in by
    #: the engine from the outbox: a vote on an older poll answers that poll's question, and
    #: a reply to an older form is read with that form's numbering.
    questions: tuple[str, ...] = ()
    #: Whether the sender has shown they read what we send to this address, set by the
    #: engine: always in Matrix (the homeserver authenticates senders); by email only with
    #: our signed reply token or as a reply to one of our messages to them. Anyone can put
    #: any address in From:, so changes to a registration by email need this.
    proven: bool = False
    #: An organiser's command (COMMAND without a target, for the organisers' router), and a
    #: COMMAND a router or a job sends on its behalf: where a step's `Outcome.reply` goes.
    caller: Caller | None = None


class OutKind(StrEnum):
    """What the transport must do with an outbox row."""

    TEXT = "text"
    #: A single/multiple choice question: a poll in Matrix, numbered options in email.
    POLL = "poll"
    #: A message to a group (a crew): a room in Matrix, one thread to all members by email.
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Invite:
    """A calendar invite attached to an outgoing message (REQUEST or CANCEL)."""

    uid: str
    sequence: int
    method: str
    summary: str
    start: datetime
    end: datetime
    tzid: str
    location: str = ""
    description: str = ""
    all_day: bool = False
    rrule: str | None = None


def _from_base64(value: object) -> object:
    """Stored rows hold file contents as base64 text; bytes given in code pass as they are."""
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


def _to_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


#: Bytes that are base64 text in JSON (an outbox row's payload).
Base64Data = Annotated[
    bytes, BeforeValidator(_from_base64), PlainSerializer(_to_base64, when_used="json")
]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message: a MIME part by email, an `m.file` event in Matrix."""

    name: str
    mime: str
    #: Left out of repr: items are logged, and a file can be megabytes.
    data: Base64Data = field(repr=False)


#: The most file data one message may carry, all attachments together. By email each byte
#: becomes 4/3 in base64, and Postfix refuses messages over 10,240,000 bytes by default
#: (`message_size_limit`), as do many providers: 5 MiB of files is under 7 MB encoded, which
#: leaves room for the text, the HTML and an invite. The files also live base64-encoded in
#: the outbox row until it is sent, and every claim of the row reads them.
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024


class _Body(BaseModel):
    """What every kind of outgoing message says (see `OutboxItem.body`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str = ""
    text: str = ""
    html: str = ""
    invite: Invite | None = None
    #: The ids of the questions the message asks (`Outgoing.questions`); read back by routing.
    questions: tuple[str, ...] = ()


class TextBody(_Body):
    """A message to one person (or one room)."""

    kind: Literal[OutKind.TEXT] = OutKind.TEXT
    attachments: tuple[Attachment, ...] = ()


class PollBody(_Body):
    """A question with options: a poll in Matrix, numbered options by email."""

    kind: Literal[OutKind.POLL] = OutKind.POLL
    options: tuple[str, ...]
    #: Several options may be chosen (a Matrix poll with max_selections > 1).
    multiple: bool = False


class GroupBody(_Body):
    """A message to a group: its room in Matrix, one copy per member by email."""

    kind: Literal[OutKind.GROUP] = OutKind.GROUP
    #: Addresses of the group members on this channel.
    group_addresses: tuple[str, ...] = ()
    #: The room's name and topic (`Outgoing.room` rendered), and whether this message closes it.
    room_name: str = ""
    room_topic: str = ""
    closes: bool = False


#: The body of an outbox row, told apart by its `kind`.
OutboxBody = Annotated[TextBody | PollBody | GroupBody, Field(discriminator="kind")]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message a flow asks the engine to send; the engine renders and queues it.

    `to` is a person; the engine picks their channel and address. For GROUP messages `group`
    names the group (e.g. "crew-3") and `members` the people in it.
    """

    to: PersonId
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    kind: OutKind = OutKind.TEXT
    #: Options of a POLL, in order; answers come back as the option's 1-based number.
    options: tuple[str, ...] = ()
    #: POLL: several options may be chosen (a Matrix poll with max_selections > 1).
    multiple: bool = False
    invite: Invite | None = None
    #: True when the message answers something the person just wrote (not Auto-Submitted).
    is_reply: bool = True
    group: str | None = None
    members: tuple[PersonId, ...] = ()
    #: Force a channel (e.g. a verification code must go to the address being verified);
    #: for a GROUP message, only the members reached on this channel get it.
    channel: Channel | None = None
    address: str | None = None
    #: GROUP: the template naming the group's room, rendered with the message's context: its
    #: subject is the room's name, its text the topic. Applied when the room is made (later
    #: renames by organisers stand) and when it is closed.
    room: str | None = None
    #: GROUP: the group's last message. Its room stays for the members to talk on, renamed by
    #: `room`, but is no longer the group's: nobody is invited or removed, nothing is read.
    closes: bool = False
    #: People whose address this message may show (they agreed to share it with the others):
    #: the engine puts "contacts" {person id: address} in the template's context.
    contacts: tuple[PersonId, ...] = ()
    #: The ids of the questions this message asks: one for a question or a poll; for a form,
    #: its numbering (number n asks questions[n - 1]). Kept with the sent message, so that a
    #: reply is read against what the person saw, whatever changed since.
    questions: tuple[str, ...] = ()
    #: Files sent with a TEXT message, at most MAX_ATTACHMENT_BYTES together.
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Ask the engine to feed a TICK to a flow run at `due_at` (replacing one of the same name)."""

    name: str
    due_at: datetime
    person: PersonId = GATHERING_SUBJECT
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunJob:
    """Ask for CPU-heavy work (matching, solving) to run outside the engine's transaction.

    The job runner calls the flow's `jobs[name](payload)` in a worker process and feeds the
    result back to the same run as a COMMAND named JOB_DONE, payload {"job": name,
    "result": …} (or {"job": name, "error": …}). A job interrupted by a crash runs again.
    """

    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """A step's answer to whoever sent its COMMAND (`InboundMessage.caller`), rendered from a
    template like any message: a room or an address gets it through the outbox, the
    `gateway` command in its result."""

    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    #: The command was not carried out (a mistake, a rule it breaks): the terminal reports
    #: it as a failure (`Handled.refused`).
    refused: bool = False


#: The COMMAND that brings a job's result back to the run that asked for it.
JOB_DONE = "job_done"


@dataclass(frozen=True, slots=True)
class Emit:
    """An event for another flow run, handled in the same transaction after this step."""

    flow: str
    person: PersonId
    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A rendered, addressed message as the outbox worker hands it to a transport.

    The header says where it goes and how it threads; `body` is what it says, one model per
    kind (`TextBody`, `PollBody`, `GroupBody`)."""

    id: OutboxId
    idempotency_key: str
    channel: Channel
    #: The recipient's address; for GROUP messages the group's key (e.g. "crew-3").
    address: str
    person: PersonId | None
    gathering: str | None
    flow: str | None
    attempts: int
    body: OutboxBody
    is_reply: bool = True
    #: The external id of the person's message this answers, and of the conversation's first
    #: message of ours, so transports can thread (In-Reply-To/References, m.in_reply_to).
    in_reply_to: str | None = None
    thread_root: str | None = None
    #: Signed routing token for replies (email Reply-To plus address).
    reply_token: str | None = None
    #: When the row was queued: transports date the message with it (not with the time of
    #: sending), so a resend after a crash is the same message byte for byte.
    created_at: datetime | None = None

    @property
    def kind(self) -> OutKind:
        return self.body.kind

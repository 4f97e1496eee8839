"""Crews end to end, with every server real: from registrations to an accepted crew call.

The service runs as `gateway run` wires it (Service + build_channels) against Synapse, Postfix
and Dovecot. Six people register through the engine and the real registration flow, three
on Matrix and three by email; the organiser proposes and approves crews with the same
operations `gateway crews propose/approve` use. What each person then sees is read from
their own side: a Matrix client's invite and room, a Dovecot mailbox, a calendar parser
that is not ours (ical.js), and finally the organiser's roster after a Google-Calendar-like
Accept travelled Postfix → Dovecot → the gateway's IMAP reader.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nio import AsyncClient, RoomCreateResponse, RoomSendResponse

from gateway.channels.matrix.rooms import GROUP_STATE
from gateway.core.engine import Engine
from gateway.model import Identity
from gateway.ops.crews import commands as crews_ops
from gateway.ops.crews.inputs import load_registrants
from tests.kit import email as kit
from tests.kit import participants
from tests.kit.email_participant import Participant, plain_text
from tests.kit.engine import as_reply, channel_of
from tests.kit.matrix import room_history, sync_until
from tests.kit.participants import bot_said, says, until_said
from tests.kit.service import both_channels_config
from tests.kit.service import running as running_service
from tests.servers import DovecotServer, MailUser, MatrixUser, PostfixServer, SynapseServer
from tests.unit.test_calendar import ical_js

ZONE = "Europe/Lisbon"
CALLS = 6

CONFIG = """
[store]
path = "gateway.sqlite3"

{matrix}organisers_room = "{organisers_room}"
{email}
[[organisers]]
name = "Olga"
matrix = "{organiser}"

[gatherings.camp]
name = "Camp 2027"
timezone = "{zone}"
starts = 2027-07-01
ends = 2027-07-05
capacity = 20

[[gatherings.camp.registration.questions]]
id = "bio"
type = "text"
prompt = "Tell your crew a little about you:"
shareable = true

[[gatherings.camp.registration.questions]]
id = "diet"
type = "text"
prompt = "What do you eat?"

[[gatherings.camp.registration.questions]]
id = "share"
type = "yes_no"
prompt = "May your crew see your answers?"

[gatherings.camp.crews]
min_size = 3
max_size = 3
consent_question = "share"
call_weekday = "TH"
call_time = "19:00"
call_minutes = 60
call_count = {calls}
solve_seconds = 2
"""


@dataclass
class Member:
    """One registrant: who they are, where they are reached, and the crew they are pinned to
    (0 for a late registrant, whom the repair places)."""

    name: str
    share: bool
    crew: int
    matrix: MatrixUser | None = None
    mail: Participant | None = None

    @property
    def identity(self) -> Identity:
        if self.matrix is not None:
            return Identity.matrix(self.matrix.user_id, self.name)
        assert self.mail is not None
        return Identity.email(self.mail.box.address, self.name)

    @property
    def address(self) -> str:
        return self.identity.address

    @property
    def bio(self) -> str:
        return f"{self.name} keeps bees"

    @property
    def diet(self) -> str:
        return f"{self.name}-private-diet"


async def register(engine: Engine, member: Member) -> None:
    """The registration flow's whole conversation (one question per chat message, the
    numbered form at once by email), then "yes" to the summary."""
    share = "yes" if member.share else "no"
    answers = [member.bio, member.diet, share]
    await participants.register(engine, member.identity, channel_of(member.identity), answers)


@asynccontextmanager
async def running(config_path: Path) -> AsyncIterator[Engine]:
    """The service as `gateway run` builds it. The crews operations below use its engine, as
    the organisers' room does (`gateway crews` opens its own on the same database)."""
    async with running_service(config_path) as service:
        yield service.engine


async def crew_room(engine: Engine, key: str) -> str:
    """The crew room the bot made, once the outbox has sent the introduction."""
    found: list[str] = []

    async def made() -> bool:
        async with engine.store.read() as tx:
            row = await tx.one(
                "SELECT room_id FROM matrix_rooms WHERE kind = 'group' AND key = ?", (key,)
            )
        found[:] = [str(row[0])] if row else []
        return bool(found)

    await kit.until(made, limit=60)
    return found[0]


def memberships(synapse: SynapseServer, bot: MatrixUser, room_id: str) -> dict[str, str]:
    """Who the homeserver says is in the room (joined or invited), as the bot sees it."""
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/members"
    chunk = synapse.request("GET", path, token=bot.access_token)["chunk"]
    return {e["state_key"]: e["content"]["membership"] for e in chunk}


def room_state(
    synapse: SynapseServer, bot: MatrixUser, room_id: str, event_type: str
) -> dict[str, Any]:
    """The content of a state event of the room, as the homeserver has it now."""
    path = (
        f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/state/"
        f"{urllib.parse.quote(event_type)}"
    )
    content: dict[str, Any] = synapse.request("GET", path, token=bot.access_token)
    return content


async def join_crew_room(client: AsyncClient, room_id: str) -> tuple[str, str]:
    """Wait for the invite to arrive, join, and return the room's (name, topic) as shown."""
    await sync_until(client, lambda: room_id in client.invited_rooms or room_id in client.rooms)
    await client.join(room_id)
    await sync_until(
        client, lambda: room_id in client.rooms and client.rooms[room_id].topic is not None
    )
    room = client.rooms[room_id]
    return str(room.name), str(room.topic)


async def mail_about(member: Member, subject: str) -> EmailMessage:
    """The mail with this subject in the member's Dovecot mailbox, among their registration
    mails; waits for it to arrive."""
    assert member.mail is not None
    box = member.mail
    found: list[EmailMessage] = []

    async def arrived() -> bool:
        for raw in box.dovecot.mailbox_messages(box.box.address):
            message = message_from_bytes(raw, policy=policy.default)
            if message["Subject"] == subject:
                assert isinstance(message, EmailMessage)
                found[:] = [message]
                return True
        return False

    await kit.until(arrived, limit=60)
    return found[0]


def read_invite(message: EmailMessage, path: Path) -> dict[str, Any]:
    """The mail's text/calendar part as ical.js reads it (the VCALENDAR, one event)."""
    [ics] = [
        bytes(p.get_payload(decode=True))
        for p in message.walk()
        if p.get_content_type() == "text/calendar"
    ]
    path.write_bytes(ics)
    [calendar] = ical_js([path])
    return calendar


def expected_calls(approved_at: datetime) -> list[str]:
    """The weekly Thursday 19:00 Lisbon calls in UTC, computed here with zoneinfo (not with
    the gateway's VTIMEZONE): the first is the Thursday after the day of approval."""
    today = approved_at.astimezone(ZoneInfo(ZONE)).date()
    first = next(d for d in (today + timedelta(days=k) for k in range(1, 8)) if d.weekday() == 3)
    days: list[date] = [first + timedelta(weeks=k) for k in range(CALLS)]
    return [
        datetime.combine(d, time(19), ZoneInfo(ZONE)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for d in days
    ]


def roster_calls(text: str) -> dict[str, tuple[int, str]]:
    """Name → (crew, call answer) from `gateway crews roster`'s table."""
    rows = (re.match(r"(\d+) +\d+ +(\S+) +(\S+)$", line.strip()) for line in text.splitlines())
    return {m[2]: (int(m[1]), m[3]) for m in rows if m}


@dataclass
class Camp:
    """The running service with six people registered and two crews approved and announced."""

    engine: Engine
    bot: MatrixUser
    members: dict[str, Member]
    crews: dict[int, list[Member]]
    approved_at: datetime
    rooms: dict[int, str]
    #: Registers one more person on the running service (late registrations).
    add: Callable[[str, bool, str], Awaitable[Member]]
    #: `!crews …` in the organisers' room: the bot's first answer there containing the text.
    ask: Callable[[str, str], Awaitable[str]]


@pytest.fixture
async def camp(
    synapse: SynapseServer,
    dovecot: DovecotServer,
    postfix: PostfixServer,
    mailbox: MailUser,
    matrix_client: Any,
    tmp_path: Path,
) -> AsyncIterator[Camp]:
    bot = synapse.new_user("crewbot")
    # The organisers' room exists before the service starts (its id is in the config).
    olga = await matrix_client(synapse.new_user("olga"))
    # Named as in the config: the router compares whole identities, display name included.
    await olga.set_displayname("Olga")
    created = await olga.room_create(name="Organisers", invite=[bot.user_id])
    assert isinstance(created, RoomCreateResponse), created
    organisers_room = created.room_id
    await sync_until(olga, lambda: organisers_room in olga.rooms)

    def member(name: str, share: bool, channel: str, crew: int = 0) -> Member:
        if channel == "matrix":
            return Member(name, share, crew, matrix=synapse.new_user(name.lower()))
        box = dovecot.new_user(name.lower())
        return Member(name, share, crew, mail=Participant(name, box, dovecot, postfix))

    # Crew 1 mixes both channels and has an email member who keeps their answers private;
    # crew 2 has a Matrix member who does.
    everyone = [
        member("Ana", True, "matrix", 1),
        member("Bea", True, "matrix", 2),
        member("Cy", False, "matrix", 2),
        member("Dev", True, "email", 1),
        member("Eli", False, "email", 1),
        member("Fay", True, "email", 2),
    ]
    config_path = both_channels_config(
        tmp_path / "gateway.toml",
        CONFIG,
        synapse=synapse,
        bot=bot,
        mailbox=mailbox,
        postfix=postfix,
        dovecot=dovecot,
        zone=ZONE,
        calls=CALLS,
        organisers_room=organisers_room,
        organiser=olga.user_id,
    )
    overrides = tmp_path / "camp.crews.toml"
    overrides.write_text("[pins]\n" + "".join(f'"{m.address}" = {m.crew}\n' for m in everyone))

    async def ask(line: str, answer: str) -> str:
        """The organiser writes in the organisers' room; the bot answers there (a solve:
        at once that it is solving, the proposal when the job runner has it)."""
        before = len(await bot_said(olga, bot, organisers_room))
        await olga.room_send(organisers_room, "m.room.message", {"msgtype": "m.text", "body": line})
        said = await until_said(
            olga, bot, organisers_room, lambda s: any(answer in x for x in s[before:])
        )
        return next(x for x in said[before:] if answer in x)

    async with running(config_path) as engine:
        # The bot accepts the invitation to the organisers' room when it starts.
        await sync_until(olga, lambda: bot.user_id in olga.rooms[organisers_room].users)
        for one in everyone:
            await register(engine, one)
        proposal = await ask("!crews camp propose", "Initial proposal")
        said = await bot_said(olga, bot, organisers_room)
        # "Solving…" at once, from the command; the proposal later, from the job runner.
        solving = said.index(proposal) - 1
        assert said[solving].startswith("Solving crews for Camp 2027 (up to 2 s)")
        assert "Approve with: !crews camp approve" in proposal
        for one in everyone:  # the gathering's overrides file placed everyone
            assert f"  - {one.name}" in proposal
        await ask("!crews camp approve", "crews approved and announced (2 crews)")
        approved = (await crews_ops.read_state(engine.store, "camp")).approved
        assert approved is not None
        names = {str(r.person): r.name for r in await load_registrants(engine.store, "camp")}
        assert {names[key]: crew + 1 for key, crew in approved.assignment.items()} == {
            m.name: m.crew for m in everyone
        }

        async def add(name: str, share: bool, channel: str) -> Member:
            late = member(name, share, channel)
            await register(engine, late)
            return late

        yield Camp(
            engine,
            bot,
            {m.name: m for m in everyone},
            {n: [m for m in everyone if m.crew == n] for n in (1, 2)},
            approved.approved_at,
            {n: await crew_room(engine, f"camp/crew-{n}") for n in (1, 2)},
            add,
            ask,
        )


async def test_crews_announced_on_matrix_and_email_and_a_call_accepted(
    camp: Camp,
    synapse: SynapseServer,
    matrix_client: Any,
    mailbox: MailUser,
    tmp_path: Path,
) -> None:
    bot, crews, rooms, by_name = camp.bot, camp.crews, camp.rooms, camp.members
    ana, dev = by_name["Ana"], by_name["Dev"]

    # Matrix: each crew has its own room, holding exactly its Matrix members and the bot.
    assert rooms[1] != rooms[2]
    for n, members in crews.items():
        assert memberships(synapse, bot, rooms[n]) == {
            bot.user_id: "join",
            **{m.address: "invite" for m in members if m.matrix},
        }
        # The group key is kept in the room's state, for tools, not in what people read.
        assert room_state(synapse, bot, rooms[n], GROUP_STATE) == {"key": f"camp/crew-{n}"}
    intros: dict[int, str] = {}
    clients: dict[str, AsyncClient] = {}
    for member in (m for m in by_name.values() if m.matrix is not None):
        client = clients[member.name] = await matrix_client(member.matrix)
        name, topic = await join_crew_room(client, rooms[member.crew])
        assert name == f"Camp 2027 — Crew {member.crew}"
        assert topic == (
            f"Crew {member.crew} of Camp 2027, round 1 · weekly call Thursday 19:00 {ZONE}"
        )
        [intros[member.crew]] = await bot_said(client, bot, rooms[member.crew])
        assert "React ✅ to this message if you will join the calls" in intros[member.crew]
    assert memberships(synapse, bot, rooms[1])[ana.address] == "join"

    # Email: each email member gets the introduction in their own mailbox, addressed to them.
    mails = {
        m.name: await mail_about(m, f"Crew {m.crew} · Camp 2027")
        for m in by_name.values()
        if m.mail is not None
    }
    for name, mail in mails.items():
        assert [a.addr_spec for a in mail["To"].addresses] == [by_name[name].address]
        assert plain_text(mail).startswith(f"Welcome to crew {by_name[name].crew} of Camp 2027")

    # What crewmates see: names, and shareable answers only of those who said yes.
    for n, members in crews.items():
        for text in (intros[n], *(plain_text(mails[m.name]) for m in members if m.mail)):
            for member in members:
                assert f"- {member.name}" in text
                assert (member.bio in text) == member.share, (member.name, text)
                assert member.diet not in text
                assert member.address not in text
            for other in crews[3 - n]:
                assert f"- {other.name}" not in text

    # The crew call: an iMIP REQUEST per email member, read by ical.js.
    for name, mail in mails.items():
        crew = by_name[name].crew
        calendar = read_invite(mail, tmp_path / f"{name}.ics")
        assert calendar["method"] == "REQUEST"
        [event] = calendar["events"]
        assert event["uid"] == f"camp-r1-crew-{crew}-call@crews.gathering-gateway"
        assert (event["summary"], event["sequence"]) == (f"Camp 2027: crew {crew} call", 0)
        assert event["rrule"] == f"FREQ=WEEKLY;COUNT={CALLS}"
        assert event["start"]["tzid"] == ZONE
        assert event["occurrences"] == expected_calls(camp.approved_at)
        assert event["organizer"]["email"] == mailbox.address
        assert [(a["email"], a["rsvp"]) for a in event["attendees"]] == [
            (by_name[name].address, "TRUE")
        ]

    # Dev presses "Yes" in Google Calendar; the roster shows it, nobody else changes.
    assert dev.mail is not None
    answered = await dev.mail.accept_invite(mails["Dev"])
    assert answered["uid"] == "camp-r1-crew-1-call@crews.gathering-gateway"

    async def accepted() -> bool:
        roster = roster_calls(await crews_ops.roster(camp.engine, "camp"))
        return roster.get("Dev") == (1, "ACCEPTED")

    await kit.until(accepted, limit=30)
    roster_text = await crews_ops.roster(camp.engine, "camp")
    assert roster_calls(roster_text) == {
        m.name: (m.crew, "ACCEPTED" if m is dev else "NEEDS-ACTION") for m in by_name.values()
    }
    assert "crew calls: accepted 1, needs-action 5" in roster_text

    # Ana, on Matrix, answers with a ✅ reaction to the introduction in her crew's room.
    [intro] = [
        e
        for e in await room_history(clients["Ana"], rooms[1], bot.user_id)
        if e["type"] == "m.room.message"
    ]
    reacted = await clients["Ana"].room_send(
        rooms[1],
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": intro["event_id"], "key": "✅"}},
    )
    assert isinstance(reacted, RoomSendResponse), reacted

    async def ana_accepted() -> bool:
        return roster_calls(await crews_ops.roster(camp.engine, "camp")).get("Ana") == (
            1,
            "ACCEPTED",
        )

    await kit.until(ana_accepted, limit=30)
    assert "crew calls: accepted 2, needs-action 4" in await crews_ops.roster(camp.engine, "camp")


async def repair_crew_2(camp: Camp) -> tuple[Member, Member]:
    """Cy (Matrix) and Fay (email) cancel, Gus (Matrix) and Hal (email) register late; the
    organiser runs `gateway crews update` and approves. Returns (Gus, Hal)."""
    for name in ("Cy", "Fay"):
        who = camp.members[name]
        await camp.engine.handle(await as_reply(camp.engine, says(who.identity, "cancel")))
        await camp.engine.handle(await as_reply(camp.engine, says(who.identity, "yes")))
    gus, hal = await camp.add("Gus", True, "matrix"), await camp.add("Hal", False, "email")
    repair = await camp.ask("!crews camp update", "Repair proposal")
    assert "Approve with: !crews camp approve (only changed crews are told)" in repair
    await camp.ask("!crews camp approve", "changes approved; crews told: 2")
    return gus, hal


async def crews_rows(engine: Engine) -> list[tuple[str, str]]:
    """(address, kind) of every message the crews flow queued to people and crews, in order:
    who was told (its answers to the organisers' room, addressed by room id, left out)."""
    async with engine.store.read() as tx:
        rows = await tx.all(
            "SELECT address, kind FROM outbox WHERE flow = 'crews' AND address NOT LIKE '!%'"
            " ORDER BY id"
        )
    return [(str(r[0]), str(r[1])) for r in rows]


async def test_a_repair_tells_only_the_changed_crew_and_moves_its_call(
    camp: Camp,
    synapse: SynapseServer,
    matrix_client: Any,
    tmp_path: Path,
) -> None:
    by_name = camp.members
    before = await crews_rows(camp.engine)
    gus, hal = await repair_crew_2(camp)
    told = (await crews_rows(camp.engine))[len(before) :]
    # Crew 1 hears nothing; crew 2 gets one message per channel; Cy and Fay one each.
    assert sorted(told) == sorted(
        [
            ("camp/crew-2", "group"),
            ("camp/crew-2", "group"),
            (by_name["Cy"].address, "text"),
            (by_name["Fay"].address, "text"),
        ]
    )

    # Gus is invited into crew 2's existing room and reads the change there.
    assert gus.matrix is not None
    client = await matrix_client(gus.matrix)
    name, _ = await join_crew_room(client, camp.rooms[2])
    assert name == "Camp 2027 — Crew 2"

    async def change_said() -> bool:
        return any(
            "has changed" in body for body in await bot_said(client, camp.bot, camp.rooms[2])
        )

    await kit.until(change_said, limit=30)
    [change] = [b for b in await bot_said(client, camp.bot, camp.rooms[2]) if "has changed" in b]
    assert "Joining you:" in change and "No longer in the crew: Cy, Fay." in change
    assert gus.bio in change and hal.bio not in change  # Hal did not consent
    assert "- Bea" in change and "- Ana" not in change

    # Hal's invitation is the same series, one SEQUENCE later, same weekly dates.
    mail = await mail_about(hal, "Crew 2 · Camp 2027: a change")
    assert [a.addr_spec for a in mail["To"].addresses] == [hal.address]
    [event] = read_invite(mail, tmp_path / "hal.ics")["events"]
    assert (event["uid"], event["sequence"]) == ("camp-r1-crew-2-call@crews.gathering-gateway", 1)
    assert event["occurrences"] == expected_calls(camp.approved_at)

    # Fay's calendar drops the series.
    fay = by_name["Fay"]
    left = await mail_about(fay, "Camp 2027: you left crew 2")
    cancel = read_invite(left, tmp_path / "fay.ics")
    assert cancel["method"] == "CANCEL"
    assert [(e["uid"], e["sequence"]) for e in cancel["events"]] == [
        ("camp-r1-crew-2-call@crews.gathering-gateway", 1)
    ]

    # Hal accepts the updated call; the roster has the new crew 2 and no one who left.
    assert hal.mail is not None
    await hal.mail.accept_invite(mail)

    async def accepted() -> bool:
        roster = roster_calls(await crews_ops.roster(camp.engine, "camp"))
        return roster.get("Hal") == (2, "ACCEPTED")

    await kit.until(accepted, limit=30)
    assert roster_calls(await crews_ops.roster(camp.engine, "camp")) == {
        "Ana": (1, "NEEDS-ACTION"),
        "Dev": (1, "NEEDS-ACTION"),
        "Eli": (1, "NEEDS-ACTION"),
        "Bea": (2, "NEEDS-ACTION"),
        "Gus": (2, "NEEDS-ACTION"),
        "Hal": (2, "ACCEPTED"),
    }


async def test_a_member_who_leaves_a_crew_leaves_its_room(
    camp: Camp,
    synapse: SynapseServer,
    matrix_client: Any,
) -> None:
    cy = camp.members["Cy"]
    assert cy.matrix is not None
    await join_crew_room(await matrix_client(cy.matrix), camp.rooms[2])
    await repair_crew_2(camp)

    async def sent() -> bool:
        async with camp.engine.store.read() as tx:
            row = await tx.one(
                "SELECT COUNT(*) FROM outbox WHERE flow = 'crews'"
                " AND channel = 'matrix' AND status != 'sent'"
            )
        return row is not None and row[0] == 0

    await kit.until(sent, limit=30)
    assert memberships(synapse, camp.bot, camp.rooms[2]).get(cy.address) != "join"


async def test_a_new_round_cancels_the_old_calls_and_closes_the_old_rooms(
    camp: Camp,
    synapse: SynapseServer,
    matrix_client: Any,
    tmp_path: Path,
) -> None:
    bot, by_name = camp.bot, camp.members
    ana, bea, dev = by_name["Ana"], by_name["Bea"], by_name["Dev"]
    assert ana.matrix is not None and bea.matrix is not None and dev.mail is not None
    clients = {m.name: await matrix_client(m.matrix) for m in (ana, bea)}
    for member in (ana, bea):
        await join_crew_room(clients[member.name], camp.rooms[member.crew])
    old_intro = await mail_about(dev, "Crew 1 · Camp 2027")

    assert "Approve with: !crews camp approve" in await camp.ask(
        "!crews camp round", "Round proposal"
    )
    await camp.ask("!crews camp approve", "crews approved and announced (2 crews)")
    approved = (await crews_ops.read_state(camp.engine.store, "camp")).approved
    assert approved is not None
    names = {r.name: str(r.person) for r in await load_registrants(camp.engine.store, "camp")}
    crew_now = {n: approved.assignment[names[n]] + 1 for n in by_name}

    # Dev's calendar drops the round-1 series: METHOD:CANCEL, same UID, one SEQUENCE up.
    cancel = read_invite(
        await mail_about(dev, "Crew 1 · Camp 2027: round 1 has ended"), tmp_path / "dev-cancel.ics"
    )
    assert cancel["method"] == "CANCEL"
    assert [(e["uid"], e["sequence"]) for e in cancel["events"]] == [
        ("camp-r1-crew-1-call@crews.gathering-gateway", 1)
    ]
    # …and gets round 2's introduction with its own call; no other mail from the gateway.
    intro = await mail_about(dev, f"Crew {crew_now['Dev']} · Camp 2027 · round 2")
    [event] = read_invite(intro, tmp_path / "dev-r2.ics")["events"]
    assert event["uid"] == f"camp-r2-crew-{crew_now['Dev']}-call@crews.gathering-gateway"
    assert sorted(m["Subject"] for m in crew_mails(dev)) == sorted(
        ["Crew 1 · Camp 2027", "Crew 1 · Camp 2027: round 1 has ended", intro["Subject"]]
    )

    # The old room is told, renamed for people, and left to them: nobody is removed.
    old = camp.rooms[1]
    client = clients["Ana"]

    async def closing_said() -> bool:
        return any("has ended" in b for b in await bot_said(client, bot, old))

    await kit.until(closing_said, limit=30)
    [closing] = [b for b in await bot_said(client, bot, old) if "has ended" in b]
    assert "moved on to round 2" in closing and "stays open" in closing
    assert (
        room_state(synapse, bot, old, "m.room.name")["name"]
        == "Camp 2027 — Crew 1 (round 1, ended)"
    )
    assert "moved on to round 2" in room_state(synapse, bot, old, "m.room.topic")["topic"]
    assert memberships(synapse, bot, old)[ana.address] == "join"

    # Ana's new room; her ✅ there counts, a late ❌ in the old room does not.
    new_room = await crew_room(camp.engine, f"camp/round-2/crew-{crew_now['Ana']}")
    name, _ = await join_crew_room(client, new_room)
    assert name == f"Camp 2027 — Crew {crew_now['Ana']} (round 2)"
    await react(client, bot, new_room, "✅")

    async def ana_accepted() -> bool:
        return roster_calls(await crews_ops.roster(camp.engine, "camp")).get("Ana") == (
            crew_now["Ana"],
            "ACCEPTED",
        )

    await kit.until(ana_accepted, limit=30)
    await react(client, bot, old, "❌")
    # A marker behind it: Bea's ✅ in her new room is read after Ana's ❌ was.
    bea_room = await crew_room(camp.engine, f"camp/round-2/crew-{crew_now['Bea']}")
    await join_crew_room(clients["Bea"], bea_room)
    await react(clients["Bea"], bot, bea_room, "✅")

    async def bea_accepted() -> bool:
        return roster_calls(await crews_ops.roster(camp.engine, "camp")).get("Bea") == (
            crew_now["Bea"],
            "ACCEPTED",
        )

    await kit.until(bea_accepted, limit=30)

    # Dev's late Accept of the cancelled round-1 call reaches the gateway and changes nothing.
    await dev.mail.accept_invite(old_intro)

    async def reply_read() -> bool:
        async with camp.engine.store.read() as tx:
            row = await tx.one("SELECT COUNT(*) FROM inbox WHERE kind = 'calendar_reply'")
        return row is not None and row[0] == 1

    await kit.until(reply_read, limit=30)
    assert roster_calls(await crews_ops.roster(camp.engine, "camp")) == {
        n: (crew_now[n], "ACCEPTED" if n in ("Ana", "Bea") else "NEEDS-ACTION") for n in by_name
    }


def crew_mails(member: Member) -> list[EmailMessage]:
    """The crews' mails in the member's mailbox (registration mails left out)."""
    assert member.mail is not None
    box = member.mail
    found = []
    for raw in box.dovecot.mailbox_messages(box.box.address):
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        if str(message["Subject"]).startswith("Crew "):
            found.append(message)
    return found


async def react(client: AsyncClient, bot: MatrixUser, room_id: str, key: str) -> None:
    """React to the bot's first message in the room (the crew's introduction)."""
    [first, *_] = [
        e for e in await room_history(client, room_id, bot.user_id) if e["type"] == "m.room.message"
    ]
    sent = await client.room_send(
        room_id,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": first["event_id"], "key": key}},
    )
    assert isinstance(sent, RoomSendResponse), sent

"""The organisers' router: one path for commands from the terminal, chat and mail.

The channels are fakes here (the outbox's recorders); tests/wire/matrix and tests/wire/email
send the same commands through Synapse and Postfix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.app.registry import default_flows
from gateway.config import Organiser
from gateway.model import Caller, Channel, Identity, InboundKind, OutboxItem
from gateway.ops.router import Refused, Router
from tests.kit.engine import Harness, gathering, inbound

ORG_MAIL = Identity.email("org@example.org", "Olga")
#: Her client shows another name than the config: she is recognised by her id.
ORG_CHAT = Identity.matrix("@org:hs", "Olga (she/her)")
MAYA = Identity.email("maya@example.org", "Maya")
ROOM = "!organisers:hs"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Harness]:
    olga = Organiser(name="Olga", email=ORG_MAIL.address, matrix=ORG_CHAT.address)
    h = await Harness.open(tmp_path, default_flows(), {"camp": gathering()}, organisers=[olga])
    yield h
    await h.close()


async def command(gw: Harness, sender: Identity, line: str, **fields: object) -> list[OutboxItem]:
    """`line` from `sender` as its channel hands it in: a COMMAND answered where it came
    from (the organisers' room in chat, the sender's address by mail)."""
    where = ROOM if sender.kind.value == "matrix" else sender.address
    message = inbound(sender, line, kind=InboundKind.COMMAND, at=gw.clock.now, **fields)
    message = replace(message, caller=Caller(message.channel, where))
    await gw.handle(message)
    return await gw.deliver()


async def test_status_answers_in_the_room_it_was_asked_in(gw: Harness) -> None:
    (answer,) = await command(gw, ORG_CHAT, "!status")
    assert answer.channel == Channel.MATRIX and answer.address == ROOM
    assert "camp" in answer.body.text and "outbox" in answer.body.text


async def test_a_redelivered_command_is_neither_run_nor_answered_twice(gw: Harness) -> None:
    message = inbound(ORG_CHAT, "!status", kind=InboundKind.COMMAND, external_id="$ev1")
    message = replace(message, caller=Caller(Channel.MATRIX, ROOM))
    first = await gw.handle(message)
    again = await gw.handle(message)
    assert not first.duplicate and again.duplicate
    assert len(await gw.deliver()) == 1


async def test_others_are_refused_and_a_mere_exclamation_is_what_they_said(gw: Harness) -> None:
    (refusal,) = await command(gw, MAYA, "!status")
    assert refusal.address == MAYA.address and "only the organisers" in refusal.body.text
    # Not a command word: a participant's "!!! …" / "!Hi" goes to registration as text.
    sent = await command(gw, MAYA, "!Hello, I would like to come")
    assert sent and all("organisers" not in i.body.text for i in sent)
    status, _ = await gw.run(await gw.person_of(MAYA))
    assert status  # a registration run began


async def test_unknown_commands_get_the_list(gw: Harness) -> None:
    (answer,) = await command(gw, ORG_CHAT, "!stauts")
    assert "Unknown command 'stauts'" in answer.body.text and "export GATHERING" in answer.body.text


async def test_by_mail_a_change_needs_a_reply_to_our_message(gw: Harness) -> None:
    """Anyone can write From: org@…; only the organiser reads org@…'s mail. A forged
    announcement is answered to the real organiser, who can run it by replying."""
    await gw.say(MAYA, "register")  # someone to announce to (not yet registered: 0 people)
    (challenge,) = await command(gw, ORG_MAIL, "!announce camp Bring boots", in_reply_to=None)
    assert challenge.address == ORG_MAIL.address
    assert "must come as a reply" in challenge.body.text
    assert "!announce camp Bring boots" in challenge.body.text
    _, state = await gw.run(0, "organisers")
    assert "pending" not in state
    # The organiser replies to our message: now it runs, and the flow answers by mail.
    (confirm,) = await command(
        gw,
        ORG_MAIL,
        "!announce camp Bring boots",
        in_reply_to=f"<{challenge.idempotency_key}@test>",
    )
    assert "would go to 0 registered people" in confirm.body.text
    assert confirm.address == ORG_MAIL.address
    _, state = await gw.run(0, "organisers")
    assert state["pending"]["text"] == "Bring boots"


async def test_reading_by_mail_needs_no_proof_and_goes_to_the_listed_address(
    gw: Harness,
) -> None:
    (answer,) = await command(gw, ORG_MAIL, "!status", in_reply_to=None)
    assert answer.address == ORG_MAIL.address and "camp" in answer.body.text


async def test_announce_and_confirm_from_the_room(gw: Harness) -> None:
    (preview,) = await command(gw, ORG_CHAT, "!announce camp Bring\nwarm boots")
    assert preview.address == ROOM and "Bring\nwarm boots" in preview.body.text
    (sent,) = await command(gw, ORG_CHAT, "!confirm")
    assert sent.address == ROOM and "0 registered people" in sent.body.text
    (nothing,) = await command(gw, ORG_CHAT, "!cancel")
    assert "no announcement waiting" in nothing.body.text


async def test_the_terminal_gets_the_same_answers(gw: Harness) -> None:
    router = Router(gw.engine)
    assert "camp" in (await router.run("status")).text
    export = await router.run("export camp")
    assert export.attachments[0].name == "camp-registrations.csv"
    preview = await router.run("announce camp Hello all")
    assert "would go to 0 registered people" in preview.text
    assert not await gw.deliver()  # the terminal's answers are not sent anywhere
    with pytest.raises(Refused, match="Unknown gathering 'nope'"):
        await router.run("export nope")
    with pytest.raises(Refused, match=r"no \[debrief\] section"):
        await router.run("debrief camp")


async def test_without_a_router_a_command_is_recorded_not_run(tmp_path: Path) -> None:
    h = await Harness.open(tmp_path, default_flows(), {"camp": gathering()})
    h.engine.desk = None
    try:
        message = replace(
            inbound(ORG_CHAT, "!status", kind=InboundKind.COMMAND),
            caller=Caller(Channel.MATRIX, ROOM),
        )
        handled = await h.handle(message)
        assert handled.outcome == "refused" and not await h.deliver()
    finally:
        await h.close()


async def test_a_huge_or_hostile_announcement_is_refused_or_cleaned(gw: Harness) -> None:
    (refused,) = await command(gw, ORG_CHAT, "!announce camp " + "spam " * 5000)
    assert "at most 10,000 go to everyone" in refused.body.text
    _, state = await gw.run(0, "organisers")
    assert "pending" not in state
    (preview,) = await command(gw, ORG_CHAT, "!announce camp Hi\x1b[31m all\u202e")
    _, state = await gw.run(0, "organisers")
    assert state["pending"]["text"] == "Hi[31m all" and "\x1b" not in preview.body.text


async def test_a_command_that_breaks_is_answered_and_recorded_once(gw: Harness) -> None:
    async def broken(message: object) -> object:
        raise ValueError("a bug")

    gw.engine.desk = broken  # type: ignore[assignment]
    message = inbound(ORG_CHAT, "!status", kind=InboundKind.COMMAND, external_id="$bug")
    message = replace(message, caller=Caller(Channel.MATRIX, ROOM))
    first = await gw.handle(message)
    assert first.outcome == "failed" and not (await gw.handle(message)).outcome == "failed"
    (answer,) = await gw.deliver()
    assert answer.address == ROOM and "that command failed (ValueError: a bug)" in answer.body.text


async def test_a_participants_subject_with_an_exclamation_loses_nothing(gw: Harness) -> None:
    """Maya writes "!Important" as the subject and her question as the body: no command,
    so her question (not the subject) reaches her registration."""
    message = inbound(
        MAYA,
        "!Important\nhello, I would like to come",
        kind=InboundKind.COMMAND,
        meta={"command_in": "subject"},
        in_reply_to=None,
    )
    await gw.handle(replace(message, caller=Caller(Channel.EMAIL, MAYA.address)))
    async with gw.store.read() as tx:
        rows = await tx.all("SELECT kind, outcome FROM inbox ORDER BY id")
        said = await tx.all("SELECT summary FROM audit WHERE direction = 'in'")
    assert [(r["kind"], r["outcome"]) for r in rows] == [("text", "applied")]
    assert "hello, I would like to come" in said[0]["summary"]
    assert "Important" not in said[0]["summary"]
    assert await gw.deliver()  # registration answered her

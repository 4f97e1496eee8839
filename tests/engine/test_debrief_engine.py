"""Debrief end to end on the real engine, store, outbox and timers (fake transports).

A gathering ends; prompts go out at the configured local hour to those who came, reminders
only to those who have not finished, answers arrive by chat and by inline email reply, and
at the deadline anonymised answers leave the people they came from.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flows.config import (
    CrewsConfig,
    DebriefConfig,
    GatheringConfig,
    Question,
    QuestionType,
    RegistrationConfig,
)
from flows.crews.flow import Crews
from flows.debrief import times
from flows.debrief.flow import Debrief
from flows.registration.flow import Registration
from gateway.model import (
    GATHERING_SUBJECT,
    Channel,
    Identity,
    InboundKind,
    InboundMessage,
    OutboxItem,
    Target,
)
from tests.kit.engine import Clock, Harness
from tests.kit.states import load

REFLECTIONS = [
    Question(id="learned", type=QuestionType.TEXT, prompt="What did you learn?"),
    Question(id="rating", type=QuestionType.SCALE, prompt="How was it, 1 to 5?"),
    Question(id="change", type=QuestionType.TEXT, prompt="What would you change?", required=False),
]


def camp(crews: bool = True) -> GatheringConfig:
    return GatheringConfig(
        slug="camp",
        name="Summer Camp",
        starts=date(2027, 7, 14),
        ends=date(2027, 7, 18),
        capacity=10,
        timezone="Europe/Berlin",
        registration=RegistrationConfig(
            questions=[Question(id="name", type=QuestionType.TEXT, prompt="Your name?")]
        ),
        crews=CrewsConfig(min_size=2, max_size=4) if crews else None,
        debrief=DebriefConfig(questions=REFLECTIONS, reminders=2, remind_every_days=2),
    )


ANA = Identity.email("ana@example.org", "Ana")
BO = Identity.email("bo@example.org", "Bo")
CY = Identity.matrix("@cy:example.org", "Cy")
DI = Identity.matrix("@di:example.org", "Di")
EVE = Identity.email("eve@example.org", "Eve")
FLOWS = {"registration": Registration(), "crews": Crews(), "debrief": Debrief()}
ZONE = ZoneInfo("Europe/Berlin")


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = Clock(datetime(2027, 6, 1, 9, 0, tzinfo=UTC))
    harness = await Harness.open(tmp_path, FLOWS, {"camp": camp()}, clock)
    yield harness
    await harness.close()


async def register(gw: Harness, who: Identity, name: str) -> int:
    await gw.say(who, "hello")
    if who.kind.value == "email":
        await gw.say(who, "", answers={1: name})
    else:
        await gw.say(who, name)
    await gw.say(who, "yes")
    return await gw.person_of(who)


async def command(gw: Harness, flow: str, name: str, payload: dict[str, object]) -> None:
    await gw.handle(
        InboundMessage(
            channel=Channel.INTERNAL,
            external_id=f"{flow}:{name}:{gw.clock.now.isoformat()}",
            kind=InboundKind.COMMAND,
            received_at=gw.clock.now,
            text=name,
            payload=payload,
            target=Target("camp", flow, GATHERING_SUBJECT),
        )
    )


async def came_and_crewed(gw: Harness) -> dict[str, int]:
    """Ana, Bo, Cy, Di registered and in two crews (Ana+Cy+Di, Bo); Eve cancelled."""
    people = {
        "ana": await register(gw, ANA, "Ana"),
        "bo": await register(gw, BO, "Bo"),
        "cy": await register(gw, CY, "Cy"),
        "di": await register(gw, DI, "Di"),
        "eve": await register(gw, EVE, "Eve"),
    }
    await gw.say(EVE, "cancel")
    await gw.say(EVE, "yes")
    assignment = {str(people["ana"]): 0, str(people["cy"]): 0, str(people["di"]): 0}
    assignment |= {str(people["bo"]): 1}
    await command(
        gw,
        "crews",
        "proposal",
        {"kind": "initial", "assignment": assignment, "languages": ["", ""]},
    )
    await command(gw, "crews", "approve", {})
    await gw.deliver()
    return people


def to(items: list[OutboxItem], who: Identity) -> list[OutboxItem]:
    return [i for i in items if i.address == who.address]


async def until(gw: Harness, moment: datetime) -> list[OutboxItem]:
    gw.clock.now = moment
    return await gw.fire_timers()


async def test_prompts_reminders_answers_and_anonymous_close(gw: Harness) -> None:
    people = await came_and_crewed(gw)
    assert await gw.engine.schedule() == 4  # prompt, two reminders, close
    prompt_at = times.prompt_at(camp(), camp().debrief)  # type: ignore[arg-type]
    assert prompt_at.astimezone(ZONE).hour == 10  # the configured local hour at the venue

    assert await until(gw, prompt_at - timedelta(minutes=1)) == []
    sent = await until(gw, prompt_at)
    asked = {i.address for i in sent}
    assert asked == {ANA.address, BO.address, CY.address, DI.address}  # not Eve: she cancelled
    assert "1. Who may see your answers?" in to(sent, ANA)[0].body.text  # email: one numbered form
    assert "4. What would you change?" in to(sent, ANA)[0].body.text
    cy_first = to(sent, CY)[-1]
    assert cy_first.kind.value == "text"  # no native poll: polls show who voted
    assert "Who may see your answers?" in cy_first.body.text

    # A restart across the prompt time: scheduling again must not prompt again.
    assert await gw.engine.schedule() == 3  # the reminders and the close; the prompt is done
    assert await until(gw, prompt_at + timedelta(minutes=5)) == []

    # Ana answers inline by email, anonymously.
    thanks = await gw.say(ANA, "", answers={1: "3", 2: "Trust the slow process", 3: "4"})
    assert "Thank you" in thanks[0].body.text and "without your name" in thanks[0].body.text
    # Cy answers in the chat, for the crew; an out-of-scale rating is asked again.
    await gw.say(CY, "2")
    await gw.say(CY, "Listening is a practice")
    again = await gw.say(CY, "9")
    assert (
        "whole number from 1 to 5" in again[0].body.text or "between 1 and 5" in again[0].body.text
    )
    await gw.say(CY, "5")
    done = await gw.say(CY, "skip")
    assert "crew" in done[0].body.text

    reminded = await until(gw, prompt_at + timedelta(days=2))
    assert {i.address for i in reminded} == {BO.address, DI.address}  # not those who finished
    assert "2 of 4 people have answered; 2 of your crew of 3." in to(reminded, DI)[0].body.text
    assert "2 of 4 people have answered." in to(reminded, BO)[0].body.text  # a crew of one: no line

    # Bo finishes after the reminder, organisers only; Di never answers.
    await gw.say(BO, "", answers={1: "1", 2: "Cooking together", 3: "3", 4: "skip"})
    second = await until(gw, prompt_at + timedelta(days=4))
    assert {i.address for i in second} == {DI.address}

    closed = await until(gw, times.deadline(camp(), camp().debrief))  # type: ignore[arg-type]
    crew_messages = [i for i in closed if "looks back" in (i.body.subject or "")]
    # Crew 1 (Ana, Cy, Di) hears Cy's crew answers; crew 2's member shared nothing with it.
    assert crew_messages and all("Listening is a practice" in i.body.text for i in crew_messages)
    assert not any("Cooking together" in i.body.text for i in closed)  # organisers only
    assert not any("Trust the slow process" in i.body.text for i in closed)  # anonymous

    _, ana_state = await gw.run(people["ana"], "debrief")
    # Only the marks stay (and the questionnaire's answers, empty).
    assert ana_state == {"status": "closed", "finished": True, "anonymous": True, "answers": {}}
    _, shared = await gw.run(GATHERING_SUBJECT, "debrief")
    assert shared["anonymous"]["learned"] == ["Trust the slow process"]
    assert shared["anonymous"]["rating"] == [4]

    # The anonymous answer is nowhere in the database but in the unordered pool.
    async with gw.store.read() as tx:
        for table in ("audit", "inbox", "outbox", "timers"):
            rows = await tx.all(f"SELECT * FROM {table}")  # noqa: S608
            assert not any("slow process" in json.dumps(list(r)) for r in rows), table
        runs = await tx.all("SELECT person_id, state FROM flow_runs")
    holders = [r["person_id"] for r in runs if "slow process" in r["state"]]
    assert holders == [GATHERING_SUBJECT]

    late = await gw.say(DI, "Sorry, late: I loved it")
    assert "has closed" in late[0].body.text


async def test_people_who_finished_can_change_until_the_deadline(gw: Harness) -> None:
    await came_and_crewed(gw)
    await gw.engine.schedule()
    await until(gw, times.prompt_at(camp(), camp().debrief))  # type: ignore[arg-type]
    await gw.say(CY, "1")
    await gw.say(CY, "Patience")
    await gw.say(CY, "4")
    await gw.say(CY, "skip")
    status = await gw.say(CY, "status")
    assert "Patience" in status[0].body.text  # organisers only: their own answers are shown
    await gw.say(CY, "change 2")
    updated = await gw.say(CY, "Patience, and saying no")
    assert "Updated" in updated[0].body.text
    _, state = await gw.run(await gw.person_of(CY), "debrief")
    assert state["answers"]["learned"] == "Patience, and saying no"

    await gw.say(CY, "change 1")
    await gw.say(CY, "3")  # now anonymous: answers are no longer repeated back
    status = await gw.say(CY, "status")
    assert "Patience" not in status[0].body.text and "anonymous" in status[0].body.text


async def test_nothing_is_asked_of_people_who_declined_the_invite(tmp_path: Path) -> None:
    clock = Clock(datetime(2027, 6, 1, 9, 0, tzinfo=UTC))
    gw = await Harness.open(tmp_path, FLOWS, {"camp": camp(crews=False)}, clock)
    try:
        await register(gw, ANA, "Ana")
        await register(gw, BO, "Bo")
        _, state = await gw.run(await gw.person_of(BO))
        from tests.kit.engine import calendar_reply

        await gw.handle(calendar_reply(BO, state["invite_uid"], "DECLINED", state["sequence"]))
        await gw.deliver()
        await gw.engine.schedule()
        sent = await until(gw, times.prompt_at(camp(), camp().debrief))  # type: ignore[arg-type]
        assert {i.address for i in sent} == {ANA.address}
        # Without crews, "my crew" is not offered.
        assert "my crew" not in sent[0].body.text
    finally:
        await gw.close()


def test_prompt_time_follows_the_gathering_file() -> None:
    g = camp()
    assert g.debrief is not None
    # Ends on 18 July (all day): over at midnight, +12 h is noon, the next 10:00 is the 20th.
    assert times.prompt_at(g, g.debrief) == datetime(2027, 7, 20, 10, tzinfo=ZONE)
    assert times.deadline(g, g.debrief) == datetime(2027, 7, 27, 10, tzinfo=ZONE)
    assert list(times.reminders(g, g.debrief)) == ["remind.1", "remind.2"]
    late = g.debrief.model_copy(update={"reminders": 5, "remind_every_days": 2})
    assert len(times.reminders(g, late)) == 3  # only those before the deadline


async def test_stay_with_answers_feed_the_next_round_of_crews(tmp_path: Path) -> None:
    """Ana and Cy, crewmates in round 1, both ask in the debrief to stay together: the new
    round keeps them together although it otherwise avoids last round's pairs."""
    from tests.kit.crews import crews

    stay = Question(id="stay", type=QuestionType.TEXT, prompt="Stay with?", required=False)
    base = camp()
    assert base.debrief is not None
    g = base.model_copy(
        update={
            "crews": CrewsConfig(min_size=2, max_size=2, solve_seconds=1),
            "debrief": base.debrief.model_copy(
                update={"questions": [*REFLECTIONS, stay], "stay_with_question": "stay"}
            ),
        }
    )
    clock = Clock(datetime(2027, 6, 1, 9, 0, tzinfo=UTC))
    gw = await Harness.open(tmp_path, FLOWS, {"camp": g}, clock)
    try:
        ids = {n: await register(gw, who, n) for n, who in (("Ana", ANA), ("Bo", BO))}
        ids |= {n: await register(gw, who, n) for n, who in (("Cy", CY), ("Di", DI))}
        round_1 = {str(ids["Ana"]): 0, str(ids["Cy"]): 0, str(ids["Bo"]): 1, str(ids["Di"]): 1}
        await command(gw, "crews", "proposal", {"kind": "initial", "assignment": round_1})
        await command(gw, "crews", "approve", {})
        await gw.engine.schedule()
        await until(gw, times.prompt_at(g, g.debrief))  # type: ignore[arg-type]
        # Ana by email (2: my crew); Cy in the chat, who names Ana by her address.
        await gw.say(ANA, "", answers={1: "2", 2: "x", 3: "4", 4: "skip", 5: "Cy"})
        for reply in ("2", "y", "5", "skip", ANA.address):
            await gw.say(CY, reply)

        assert "Round proposal" in (await crews(gw.engine, "camp round --seconds 1")).text
        _, state = await gw.run(GATHERING_SUBJECT, "crews")
        crew_of = state["proposal"]["assignment"]
        assert crew_of[str(ids["Ana"])] == crew_of[str(ids["Cy"])]
        assert crew_of[str(ids["Bo"])] == crew_of[str(ids["Di"])]
    finally:
        await gw.close()


def test_schedule_drops_reminders_the_organisers_removed_and_keeps_done_work_done() -> None:
    g = camp()
    assert g.debrief is not None
    flow, now = Debrief(), datetime(2027, 7, 1, tzinfo=UTC)
    done = now.isoformat()

    def shared(stored: dict[str, Any]) -> Any:
        return load(flow, stored, gathering_run=True)

    before = flow.schedule(g, shared({}), now)
    assert before["remind.1"] is not None and before["remind.2"] is not None
    fewer = g.model_copy(update={"debrief": g.debrief.model_copy(update={"reminders": 1})})
    after = flow.schedule(fewer, shared({"prompted": done, "reminded": []}), now)
    assert "prompt" not in after  # done: never set again
    assert after["remind.1"] is not None and after["remind.2"] is None
    closed = flow.schedule(
        g, shared({"prompted": done, "reminded": ["remind.1"], "closed": done}), now
    )
    assert closed["remind.1"] is None and "close" not in closed

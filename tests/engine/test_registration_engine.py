"""Registration end to end: real Engine, store, outbox and timers; fake transports."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from flows.common.forms import Problem, parse_answer
from flows.config import GatheringConfig, Question, QuestionType, RegistrationConfig, ShowIf
from flows.registration.flow import Registration
from flows.registration.seats import invariant_violations
from gateway.model import Identity, InboundKind, OutboxItem, OutKind, PersonId
from tests.kit.engine import Harness, calendar_reply, inbound

QUESTIONS = [
    Question(
        id="diet",
        type=QuestionType.SINGLE_CHOICE,
        prompt="What do you eat?",
        options=["vegan", "vegetarian", "omnivore"],
    ),
    Question(id="nights", type=QuestionType.NUMBER, prompt="How many nights?", min=1, max=4),
    Question(id="car", type=QuestionType.YES_NO, prompt="Do you come by car?"),
    Question(
        id="seats",
        type=QuestionType.NUMBER,
        prompt="Free seats?",
        min=0,
        max=8,
        show_if=ShowIf(question="car", equals=True),
    ),
    Question(id="notes", type=QuestionType.TEXT, prompt="Anything else?", required=False),
]
EMAIL_ANSWERS = {1: "vegan", 2: "3", 3: "no", 5: "skip"}


def camp(capacity: int = 2, questions: list[Question] | None = None) -> GatheringConfig:
    return GatheringConfig(
        slug="camp",
        name="Summer Camp",
        starts=date(2027, 7, 14),
        ends=date(2027, 7, 18),
        capacity=capacity,
        timezone="Europe/Berlin",
        venue="Hof Wiesengrund",
        registration=RegistrationConfig(questions=questions or QUESTIONS, hold_hours=48),
    )


ANA = Identity.email("ana@example.org", "Ana")
BO = Identity.matrix("@bo:example.org", "Bo")
CY = Identity.email("cy@example.org", "Cy")
DI = Identity.email("di@example.org", "Di")


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await Harness.open(tmp_path, {"registration": Registration()}, {"camp": camp()})
    yield harness
    await harness.close()


async def gw_with(tmp_path: Path, capacity: int) -> Harness:
    return await Harness.open(tmp_path, {"registration": Registration()}, {"camp": camp(capacity)})


def by(items: list[OutboxItem], address: str) -> list[OutboxItem]:
    return [i for i in items if i.address == address]


async def register_by_email(gw: Harness, who: Identity) -> list[OutboxItem]:
    await gw.say(who, "hello")
    await gw.say(who, "", answers=EMAIL_ANSWERS)
    return await gw.say(who, "yes")


async def status_of(gw: Harness, who: Identity) -> str:
    return (await gw.run(await gw.person_of(who)))[0]


async def test_registration_by_email(gw: Harness) -> None:
    [form] = await gw.say(ANA, "Hello! I'd like to come.")
    assert (form.channel.value, form.address, form.kind) == ("email", ANA.address, OutKind.TEXT)
    assert "1. What do you eat?" in form.body.text and "5. Anything else?" in form.body.text
    assert "4. Free seats?" not in form.body.text
    assert "below each question" in form.body.text
    [reask] = await gw.say(ANA, "", answers={1: "veg", 2: "2", 3: "yes"})
    assert "vegan or vegetarian" in reask.body.text
    assert "4. Free seats?" in reask.body.text and "2. How many" not in reask.body.text
    [summary] = await gw.say(ANA, "", answers={1: "vegan", 4: "3"})
    assert "1. What do you eat?\n   → vegan" in summary.body.text
    assert "5. Anything else?\n   → (skipped)" in summary.body.text
    [confirmed] = await gw.say(ANA, "yes")
    assert confirmed.body.invite is not None and confirmed.body.invite.method == "REQUEST"
    status, state = await gw.run(await gw.person_of(ANA))
    assert status == "registered"
    assert state["answers"] == {
        "diet": "vegan",
        "nights": 2,
        "car": True,
        "seats": 3,
        "notes": None,
    }
    assert (await gw.run(0))[1]["registered"] == [await gw.person_of(ANA)]


async def test_registration_on_matrix_one_question_at_a_time(gw: Harness) -> None:
    welcome, poll = await gw.say(BO, "hi")
    assert poll.kind == OutKind.POLL and poll.body.options == ("vegan", "vegetarian", "omnivore")
    assert welcome.channel.value == "matrix"
    [nights] = await gw.say(BO, kind=InboundKind.CHOICE, choice="3")
    assert "How many nights?" in nights.body.text and nights.kind == OutKind.TEXT
    [reask] = await gw.say(BO, "seven")
    assert "between 1 and 4" in reask.body.text
    await gw.say(BO, "4", external_id="$answer-nights")
    [notes] = await gw.say(BO, kind=InboundKind.CHOICE, choice="no")  # ❌ reaction on yes/no
    assert "Anything else?" in notes.body.text
    [summary] = await gw.say(BO, "skip")
    assert "change 3" in summary.body.text
    [registered] = await gw.say(BO, kind=InboundKind.CHOICE, choice="yes")
    assert registered.body.invite is not None and registered.body.invite.all_day
    status, state = await gw.run(await gw.person_of(BO))
    assert status == "registered"
    assert state["answers"] == {"diet": "omnivore", "nights": 4, "car": False, "notes": None}

    # An edit of the nights answer changes that answer and shows the summary again.
    [updated] = await gw.say(BO, "2", kind=InboundKind.EDIT, replaces="$answer-nights")
    assert "2. How many nights?\n   → 2" in updated.body.text
    assert (await gw.run(await gw.person_of(BO)))[1]["answers"]["nights"] == 2
    [kept] = await gw.say(BO, kind=InboundKind.REDACTION, replaces="$answer-nights")
    assert "change 2" in kept.body.text
    assert (await gw.run(await gw.person_of(BO)))[1]["answers"]["nights"] == 2


async def test_change_command_then_summary(gw: Harness) -> None:
    await register_by_email(gw, ANA)
    [question] = await gw.say(ANA, "change nights")
    assert "2. How many nights?" in question.body.text
    [summary] = await gw.say(ANA, "1")
    assert "→ 1" in summary.body.text
    assert await status_of(gw, ANA) == "registered"


async def test_capacity_waiting_list_offer_and_accept_within_hold(tmp_path: Path) -> None:
    gw = await gw_with(tmp_path, capacity=1)
    await register_by_email(gw, ANA)
    [waiting] = await register_by_email(gw, CY)
    assert "place 1" in waiting.body.text
    [waiting2] = await register_by_email(gw, DI)
    assert "place 2" in waiting2.body.text
    await gw.say(ANA, "cancel")
    sent = await gw.say(ANA, "yes")
    [cancelled] = by(sent, ANA.address)
    assert cancelled.body.invite is not None and cancelled.body.invite.method == "CANCEL"
    assert cancelled.body.invite.sequence == 1
    [offer] = by(sent, CY.address)
    assert 'Reply "yes" to take it' in offer.body.text
    assert await status_of(gw, CY) == "offered"
    gw.clock.advance(hours=10)
    [yours] = await gw.say(CY, "yes")
    assert yours.body.invite is not None and await status_of(gw, CY) == "registered"
    gw.clock.advance(hours=60)
    assert await gw.fire_timers() == []  # the hold timer was cancelled on acceptance
    assert await status_of(gw, DI) == "waiting"
    await gw.close()


async def test_hold_expiry_passes_the_seat_on(tmp_path: Path) -> None:
    gw = await gw_with(tmp_path, capacity=1)
    for who in (ANA, CY, DI):
        await register_by_email(gw, who)
    await gw.say(ANA, "cancel")
    await gw.say(ANA, "yes")
    gw.clock.advance(hours=47)
    assert await gw.fire_timers() == []
    gw.clock.advance(hours=2)
    sent = await gw.fire_timers()
    assert "passed on" in by(sent, CY.address)[0].body.text
    assert 'Reply "yes" to take it' in by(sent, DI.address)[0].body.text
    assert await status_of(gw, CY) == "cancelled"
    shared = (await gw.run(0))[1]
    assert shared["waiting"] == [] and list(shared["offers"]) == [str(await gw.person_of(DI))]
    # The expired person may rejoin, at the end of the waiting list.
    await gw.say(CY, "join")
    [waiting] = await gw.say(CY, "yes")
    assert "place 1" in waiting.body.text
    await gw.close()


async def test_hold_that_expired_during_downtime_is_expired_when_the_person_answers(
    tmp_path: Path,
) -> None:
    gw = await gw_with(tmp_path, capacity=1)
    for who in (ANA, CY, DI):
        await register_by_email(gw, who)
    await gw.say(ANA, "cancel")
    await gw.say(ANA, "yes")
    gw.clock.advance(days=5)  # the service was down: the hold timer has not fired yet
    sent = await gw.say(CY, "yes")
    assert "passed on" in by(sent, CY.address)[0].body.text
    assert await status_of(gw, CY) == "cancelled"
    assert await status_of(gw, DI) == "offered"
    offers = (await gw.run(0))[1]["offers"]
    assert offers[str(await gw.person_of(DI))] == (gw.clock.now + timedelta(hours=48)).isoformat()
    assert await gw.fire_timers() == []
    await gw.close()


async def test_calendar_replies_accept_decline_and_stale(gw: Harness) -> None:
    await register_by_email(gw, ANA)
    person = await gw.person_of(ANA)
    uid = (await gw.run(person))[1]["invite_uid"]
    assert await gw.say(ANA, kind=InboundKind.CALENDAR_REPLY) == []  # no calendar: ignored
    await gw.handle(calendar_reply(ANA, uid, "ACCEPTED", 0))
    status, state = await gw.run(person)
    assert (status, state["attendance"]) == ("registered", "accepted")

    await gw.handle(calendar_reply(ANA, uid, "DECLINED", 0))
    [ask] = await gw.deliver()
    assert "Do you want to cancel" in ask.body.text
    assert await status_of(gw, ANA) == "registered"
    assert (await gw.run(0))[1]["registered"] == [person]
    [cancelled] = await gw.say(ANA, "yes")
    assert cancelled.body.invite is not None and cancelled.body.invite.method == "CANCEL"

    await gw.say(ANA, "join")
    [again] = await gw.say(ANA, "yes")
    assert again.body.invite is not None and again.body.invite.sequence == 2
    await gw.handle(calendar_reply(ANA, uid, "DECLINED", 1))  # answers the CANCEL: stale
    assert await gw.deliver() == []
    status, state = await gw.run(person)
    assert status == "registered" and "pending_cancel" not in state
    assert state["history"][-1]["event"] == "calendar_stale"


async def test_config_edit_mid_registration_loses_no_answer(gw: Harness) -> None:
    await gw.say(BO, "hello")
    await gw.say(BO, "vegan")
    await gw.say(BO, "3")
    tshirt = Question(
        id="tshirt",
        type=QuestionType.SINGLE_CHOICE,
        prompt="T-shirt size?",
        options=["S", "M", "L"],
    )
    edited = [QUESTIONS[0], QUESTIONS[2], QUESTIONS[3], tshirt, QUESTIONS[4]]  # nights gone
    gw.engine.reload({"camp": camp(questions=edited)})
    [nxt] = await gw.say(BO, "no")
    assert "T-shirt size?" in nxt.body.text and nxt.kind == OutKind.POLL
    await gw.say(BO, kind=InboundKind.CHOICE, choice="2")
    [summary] = await gw.say(BO, "skip")
    assert "How many nights" not in summary.body.text and "→ M" in summary.body.text
    state = (await gw.run(await gw.person_of(BO)))[1]
    assert state["answers"] == {
        "diet": "vegan",
        "nights": 3,
        "car": False,
        "tshirt": "M",
        "notes": None,
    }
    gw.engine.reload({"camp": camp(questions=[*QUESTIONS, tshirt])})
    [status] = await gw.say(BO, "status")
    assert "2. How many nights? → 3" in status.body.text


async def test_redelivered_message_changes_nothing(gw: Harness) -> None:
    await gw.say(ANA, "hello")
    message = inbound(ANA, answers=EMAIL_ANSWERS, at=gw.clock.now, external_id="<m1@x>")
    assert not (await gw.handle(message)).duplicate
    first = await gw.deliver()
    before = await gw.run(await gw.person_of(ANA))
    again = inbound(ANA, answers={1: "omnivore", 2: "1", 3: "no"}, external_id="<m1@x>")
    assert (await gw.handle(again)).duplicate
    assert await gw.deliver() == []
    assert await gw.run(await gw.person_of(ANA)) == before
    assert len(first) == 1


async def test_registration_window(tmp_path: Path) -> None:
    opens = camp().registration.model_copy(
        update={"opens_at": datetime(2027, 3, 10, 10), "closes_at": datetime(2027, 6, 1)}
    )
    gathering = camp().model_copy(update={"registration": opens})
    gw = await Harness.open(tmp_path, {"registration": Registration()}, {"camp": gathering})
    [soon] = await gw.say(BO, "hello")
    assert "opens on 10 March 2027 at 10:00" in soon.body.text
    gw.clock.advance(days=10)
    welcome, poll = await gw.fire_timers()
    assert poll.kind == OutKind.POLL
    await register_by_email(gw, ANA)
    gw.clock.advance(days=100)
    [closed] = await gw.say(CY, "hello")
    assert "closed on 1 June 2027" in closed.body.text
    await gw.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_seat_invariants_hold_through_random_operations(tmp_path: Path, seed: int) -> None:
    """A seeded random walk: people register, cancel, accept, decline and let holds expire."""
    rng = random.Random(seed)
    capacity = 3
    gw = await gw_with(tmp_path, capacity)
    people = [Identity.email(f"p{i}@example.org") for i in range(9)]
    seen: set[str] = set()
    for _ in range(120):
        who = rng.choice(people)
        action = rng.choice(["register", "register", "cancel", "yes", "no", "join", "wait"])
        if action == "register":
            await register_by_email(gw, who)
        elif action == "cancel":
            await gw.say(who, "cancel")
            await gw.say(who, "yes")
        elif action == "wait":
            gw.clock.advance(hours=rng.choice([1, 30, 60]))
            await gw.fire_timers()
        else:
            await gw.say(who, action)
        shared = (await gw.run(0))[1]
        statuses: dict[PersonId, str] = {}
        for identity in people:
            async with gw.store.read() as tx:
                row = await tx.one(
                    "SELECT r.status FROM flow_runs r"
                    " JOIN identities i ON i.person_id = r.person_id"
                    " WHERE i.address = ? AND r.flow = 'registration'",
                    (identity.address,),
                )
            if row:
                statuses[PersonId(await gw.person_of(identity))] = row[0]
        assert invariant_violations(shared, capacity, statuses) == [], action
        seen.update(statuses.values())
    # The walk must have reached every corner, or it proves little.
    assert seen == {"in_progress", "confirming", "registered", "waiting", "offered", "cancelled"}
    assert set(statuses.values()) <= {
        "in_progress",
        "confirming",
        "registered",
        "waiting",
        "offered",
        "cancelled",
    }
    await gw.close()


async def test_messages_in_the_person_language_with_english_fallback(tmp_path: Path) -> None:
    german = camp().model_copy(update={"language": "de"})
    gw = await Harness.open(tmp_path, {"registration": Registration()}, {"camp": german})
    welcome, _poll = await gw.say(BO, "hallo")
    assert "schön, dass du da bist" in welcome.body.text
    [ask] = await gw.say(BO, "cancel")
    assert "abbrechen" in ask.body.text
    [kept] = await gw.say(BO, "nein")  # no German template for this one: English
    assert "nothing changes" in kept.body.text
    await gw.close()


async def test_unsubscribe_stops_announcements_and_keeps_the_registration(tmp_path: Path) -> None:
    """What a List-Unsubscribe mail sends ("unsubscribe") is understood by registration."""
    import json

    from gateway.app.registry import default_flows
    from gateway.core.engine import Engine
    from gateway.store import open_store
    from tests.kit.engine import as_reply, gathering, text

    store = await open_store(tmp_path / "u.sqlite3")
    try:
        engine = Engine(store, default_flows(), {"camp": gathering()})
        for words in ("hello", "yes", "unsubscribe"):
            await engine.handle(await as_reply(engine, text("ana@example.org", words)))
        async with store.read() as tx:
            row = await tx.one("SELECT status, state FROM flow_runs WHERE person_id = 1")
            last = await tx.one("SELECT payload FROM outbox ORDER BY id DESC LIMIT 1")
    finally:
        await store.close()
    assert row is not None and last is not None
    assert row["status"] == "registered"
    assert json.loads(row["state"])["announcements"] is False
    assert "won't get the organisers' announcements" in json.loads(last[0])["text"]


async def test_control_characters_never_reach_answers_names_or_messages(gw: Harness) -> None:
    """ESC, BEL, NUL and bidi overrides typed (or forged) in a name or an answer would act in
    other people's mail, the CSV and the organiser's terminal: intake removes them."""
    evil = Identity.email("ev@example.org", "Ev\x1b[2J\x07\u202egnp.exe")
    await gw.say(evil, "hello")
    answers = {**EMAIL_ANSWERS, 5: "line one\r\nline\x00 two\x1b]0;pwned\x07 \u2066end\u2069"}
    [summary] = await gw.say(evil, "", answers=answers)
    _, state = await gw.run(await gw.person_of(evil))
    assert state["answers"]["notes"] == "line one\nline two]0;pwned end"
    async with gw.store.read() as tx:
        row = await tx.one("SELECT display_name FROM people WHERE display_name LIKE 'Ev%'")
    assert row is not None and row[0] == "Ev[2Jgnp.exe"
    for text in (summary.body.text, row[0], state["answers"]["notes"]):
        assert not any(c in text for c in "\x00\x07\x1b\u202e\u2066\u2069\r")


async def test_an_answer_over_the_limit_is_refused_with_the_limit_not_stored(gw: Harness) -> None:
    """A 60 KB answer made the summary too big for the homeserver, and the person heard
    nothing. Answers are bounded per type (text: 2000 characters by default)."""
    await gw.say(ANA, "hello")
    [reask] = await gw.say(ANA, "", answers={**EMAIL_ANSWERS, 5: "ha" * 30_000})
    assert "2000 characters at most" in reask.body.text
    _, state = await gw.run(await gw.person_of(ANA))
    assert "notes" not in state["answers"]
    [summary] = await gw.say(ANA, "", answers={5: "ha" * 1000})
    assert len(summary.body.text) < 5000
    _, state = await gw.run(await gw.person_of(ANA))
    assert state["answers"]["notes"] == "ha" * 1000


def test_max_length_is_configurable_per_question() -> None:
    short = Question(id="badge", type=QuestionType.TEXT, prompt="Badge?", max_length=20)
    assert parse_answer(short, "x" * 21, reference=date(2027, 1, 1)).problem == Problem(
        "too_long", {"limit": 20}
    )
    assert parse_answer(short, "x" * 20, reference=date(2027, 1, 1)).value == "x" * 20
    city = Question(id="city", type=QuestionType.CITY, prompt="From?")
    assert parse_answer(city, "Gent" * 30, reference=date(2027, 1, 1)).problem is not None


def sent_id(item: OutboxItem) -> str:
    return f"<{item.idempotency_key}@test>"  # what the recording transport answered for it


async def test_a_vote_on_an_older_poll_answers_that_polls_question(tmp_path: Path) -> None:
    """Answer the languages poll, get the diet poll, vote again on the languages poll: the
    vote changes the languages answer; the diet question stays open and its vote counts."""
    questions = [
        Question(
            id="languages",
            type=QuestionType.MULTIPLE_CHOICE,
            prompt="Languages?",
            options=["English", "Deutsch", "Español"],
        ),
        Question(
            id="diet",
            type=QuestionType.SINGLE_CHOICE,
            prompt="Diet?",
            options=["vegan", "vegetarian", "omnivore"],
        ),
    ]
    gw = await Harness.open(
        tmp_path, {"registration": Registration()}, {"camp": camp(5, questions)}
    )
    try:
        _, languages = await gw.say(BO, "hi")
        [diet] = await gw.say(
            BO, kind=InboundKind.CHOICE, choice="1", in_reply_to=sent_id(languages)
        )
        assert diet.kind == OutKind.POLL and diet.body.options[0] == "vegan"
        [again] = await gw.say(
            BO, kind=InboundKind.CHOICE, choice="2,3", in_reply_to=sent_id(languages)
        )
        _, state = await gw.run(await gw.person_of(BO))
        assert state["answers"] == {"languages": ["Deutsch", "Español"]}
        assert (
            "is updated" in again.body.text and "Languages?" in again.body.text
        )  # diet poll stays open
        [summary] = await gw.say(BO, kind=InboundKind.CHOICE, choice="3", in_reply_to=sent_id(diet))
        _, state = await gw.run(await gw.person_of(BO))
        assert state["answers"] == {"languages": ["Deutsch", "Español"], "diet": "omnivore"}
        assert "omnivore" in summary.body.text
    finally:
        await gw.close()


@pytest.mark.parametrize("change", ["added_at_top", "removed"])
async def test_a_reply_to_an_older_form_is_read_with_that_forms_numbering(
    tmp_path: Path, change: str
) -> None:
    """The organisers add a question at the top (or remove one) while a person holds the
    form: their numbered reply still lands on the questions they saw."""
    gw = await Harness.open(tmp_path, {"registration": Registration()}, {"camp": camp(5)})
    try:
        [form] = await gw.say(ANA, "hello")
        assert "1. What do you eat?" in form.body.text
        questions = list(camp(5).registration.questions)
        if change == "added_at_top":
            questions.insert(0, Question(id="name", type=QuestionType.TEXT, prompt="Name?"))
        else:
            questions = [q for q in questions if q.id != "nights"]
        gw.engine.reload({"camp": camp(5, questions)})
        await gw.say(ANA, "", answers=EMAIL_ANSWERS, in_reply_to=sent_id(form))
        _, state = await gw.run(await gw.person_of(ANA))
        answers = state["answers"]
        assert answers["diet"] == "vegan" and answers["car"] is False
        assert "name" not in answers  # "vegan" did not become a name
        if change == "added_at_top":
            assert answers["nights"] == 3
        else:
            assert "nights" not in answers
    finally:
        await gw.close()


async def test_a_greeting_after_the_welcome_is_not_taken_as_an_answer(tmp_path: Path) -> None:
    """ "thanks!" to the welcome message was stored as the first answer (a name), and every
    later answer shifted by one."""
    questions = [
        Question(id="name", type=QuestionType.TEXT, prompt="Your name?"),
        Question(id="city", type=QuestionType.CITY, prompt="From where?"),
    ]
    gw = await Harness.open(
        tmp_path, {"registration": Registration()}, {"camp": camp(5, questions)}
    )
    try:
        await gw.say(BO, "hi")
        [again] = await gw.say(BO, "Thanks! 🙏")
        assert "greeting" in again.body.text and "Your name?" in again.body.text
        await gw.say(BO, "Bo Ng")
        await gw.say(BO, "Gent")
        _, state = await gw.run(await gw.person_of(BO))
        assert state["answers"] == {"name": "Bo Ng", "city": "Gent"}
    finally:
        await gw.close()


async def test_a_forged_cancel_does_not_cancel_and_the_real_person_is_asked(gw: Harness) -> None:
    """ "cancel" then "yes" from a spoofed From:, with no token and no In-Reply-To, cancelled
    the seat. Only a reply to one of our messages to that address may change a registration."""
    await register_by_email(gw, ANA)
    assert await status_of(gw, ANA) == "registered"
    [forged_change] = await gw.say(ANA, "", answers={1: "omnivore"}, in_reply_to=None)
    assert "not applied" in forged_change.body.text
    assert (await gw.run(await gw.person_of(ANA)))[1]["answers"]["diet"] == "vegan"
    [question] = await gw.say(ANA, "cancel", in_reply_to=None)  # forged: a fresh mail
    assert "cancel" in question.body.text.lower()
    [asked] = await gw.say(ANA, "yes", in_reply_to=None)
    assert "not as a reply" in asked.body.text and "http" not in asked.body.text
    assert await status_of(gw, ANA) == "registered"
    # The real Ana replies to our message: now it is her.
    sent = await gw.say(ANA, "yes")
    assert await status_of(gw, ANA) == "cancelled"
    assert any(i.body.invite is not None and i.body.invite.method == "CANCEL" for i in sent)


async def test_raising_capacity_offers_the_free_seats_at_once(tmp_path: Path) -> None:
    """Nothing moved until the next message; now the edit itself offers the seats."""
    gw = await Harness.open(tmp_path, {"registration": Registration()}, {"camp": camp(1)})
    try:
        await register_by_email(gw, ANA)
        await register_by_email(gw, CY)
        assert await status_of(gw, CY) == "waiting"
        before = gw.engine.gatherings
        gw.engine.reload({"camp": camp(2)})
        await gw.engine.config_changed(before)
        sent = await gw.deliver()
        assert await status_of(gw, CY) == "offered"
        assert [i.address for i in sent] == [CY.address]
        # An edit that frees nothing moves nothing.
        gw.engine.reload({"camp": camp(2, [*QUESTIONS])})
        await gw.engine.config_changed({"camp": camp(1)})
        assert await gw.deliver() == []
    finally:
        await gw.close()


async def test_an_auto_replier_loop_is_detected_and_stopped(gw: Harness) -> None:
    """A bot answering each of our messages got an endless conversation (1,000 replies in two
    minutes). Past the limit the gateway stops answering; later it answers again."""
    from gateway.core.engine import LOOP_LIMIT

    await register_by_email(gw, ANA)
    answered = 0
    for n in range(LOOP_LIMIT + 30):
        answered += len(await gw.say(BO, f"Thanks for your message! ({n})"))
    assert LOOP_LIMIT - 5 <= answered <= LOOP_LIMIT + 1
    async with gw.store.read() as tx:
        loops = await tx.one("SELECT COUNT(*) FROM inbox WHERE outcome = 'loop'")
    assert loops is not None and loops[0] >= 29  # recorded, not lost
    gw.clock.advance(minutes=11)
    assert await gw.say(BO, "status")  # a person who writes at a human pace is answered

"""Registration steps called directly: (state, shared, message) → Outcome, table-driven.

Every message a step asks to send is also rendered with the real templates (in English and
German), so a template that needs a missing value fails here, not in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from flows.base import Outcome, PersonInfo
from flows.config import GatheringConfig, Question, QuestionType, RegistrationConfig, ShowIf
from flows.registration.flow import Registration
from flows.registration.text import read_command
from gateway.core.render import Renderer
from gateway.model import (
    CalendarAnswer,
    Channel,
    InboundKind,
    InboundMessage,
    OutKind,
    PersonId,
    Target,
)
from tests.kit.states import as_stored, context

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
ME = PersonId(5)
QUESTIONS = [
    Question(
        id="diet",
        type=QuestionType.SINGLE_CHOICE,
        prompt="What do you eat?",
        options=["vegan", "vegetarian", "omnivore"],
        help="We cook together.",
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
ALL = {"diet": "vegan", "nights": 3, "car": False, "notes": None}
G = GatheringConfig(
    slug="camp",
    name="Summer Camp",
    starts=date(2027, 7, 14),
    ends=date(2027, 7, 18),
    capacity=2,
    timezone="Europe/Berlin",
    venue="Hof Wiesengrund",
    registration=RegistrationConfig(questions=QUESTIONS, hold_hours=48),
)
LATER = G.model_copy(
    update={
        "registration": G.registration.model_copy(update={"opens_at": datetime(2027, 4, 1, 10, 0)})
    }
)
RENDERER = Renderer()
FLOW = Registration()


@dataclass
class Step:
    text: str = ""
    kind: InboundKind = InboundKind.TEXT
    state: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    channel: Channel = Channel.MATRIX
    gathering: GatheringConfig = G
    now: datetime = NOW
    fields: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Outcome:
        message = InboundMessage(
            channel=self.channel
            if self.kind not in (InboundKind.TICK, InboundKind.COMMAND)
            else Channel.TIMER,
            external_id="ext-1",
            kind=self.kind,
            received_at=self.now,
            text=self.text,
            target=Target("camp", "registration", ME),
            **{"proven": True, **self.fields},  # as the engine marks a verified sender
        )
        ctx = context(
            FLOW,
            message=message,
            now=self.now,
            gathering=self.gathering,
            person=PersonInfo(ME, "Ana", "en", self.channel, (self.channel,)),
            state=self.state,
            shared=self.shared,
        )
        outcome = as_stored(FLOW.step(ctx))
        for out in outcome.send:
            for language in ("en", "de"):
                rendered = RENDERER.render(
                    out.template,
                    language=language,
                    channel=self.channel.value,
                    context={
                        **out.context,
                        "gathering": _gathering_context(self.gathering),
                        "person": {"name": "Ana"},
                    },
                )
                assert rendered.text.strip(), out.template
        return outcome


def _gathering_context(g: GatheringConfig) -> dict[str, Any]:
    return {
        "slug": g.slug,
        "name": g.name,
        "venue": g.venue,
        "starts": g.starts,
        "ends": g.ends,
        "timezone": g.timezone,
        "description": g.description,
    }


def st(status: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, **extra}


def templates(outcome: Outcome) -> list[str]:
    return [o.template.removeprefix("registration/") for o in outcome.send]


# (name, step, expected status (None: unchanged), expected templates, state subset)
CASES: list[tuple[str, Step, str | None, list[str], dict[str, Any]]] = [
    (
        "hello on matrix asks the first question",
        Step("hello"),
        "in_progress",
        ["welcome", "question"],
        {"asked": "diet", "answers": {}},
    ),
    (
        "hello by email sends the whole form",
        Step("hi", channel=Channel.EMAIL),
        "in_progress",
        ["form"],
        {"answers": {}},
    ),
    (
        "a choice by number",
        Step("2", state=st("in_progress", answers={}, asked="diet")),
        "in_progress",
        ["question"],
        {"answers": {"diet": "vegetarian"}, "asked": "nights"},
    ),
    (
        "an invalid number re-asks the same question",
        Step("9", state=st("in_progress", answers={"diet": "vegan"}, asked="nights")),
        "in_progress",
        ["question"],
        {"answers": {"diet": "vegan"}, "asked": "nights"},
    ),
    (
        "yes to the car question brings the show_if question",
        Step("ja", state=st("in_progress", answers={"diet": "vegan", "nights": 2}, asked="car")),
        "in_progress",
        ["question"],
        {"asked": "seats"},
    ),
    (
        "skipping the optional last question shows the summary",
        Step(
            "skip",
            state=st(
                "in_progress", answers={k: v for k, v in ALL.items() if k != "notes"}, asked="notes"
            ),
        ),
        "confirming",
        ["summary"],
        {"answers": ALL},
    ),
    (
        "'help' explains the current question",
        Step("?", state=st("in_progress", answers={}, asked="diet")),
        None,
        ["help"],
        {},
    ),
    (
        "confirming takes a free seat and sends the invite",
        Step("yes", state=st("confirming", answers=ALL)),
        "registered",
        ["registered"],
        {"sequence": 0, "invite_uid": "camp-registration-5@gathering-gateway"},
    ),
    (
        "confirming when full joins the waiting list",
        Step("yes", state=st("confirming", answers=ALL), shared={"registered": [1, 2]}),
        "waiting",
        ["waiting"],
        {},
    ),
    (
        "'change 2' asks question 2 again",
        Step("change 2", state=st("registered", answers=ALL)),
        None,
        ["question"],
        {"changing": "nights"},
    ),
    (
        "'change diet' by id",
        Step("change diet", state=st("confirming", answers=ALL)),
        None,
        ["question"],
        {"changing": "diet"},
    ),
    (
        "the changed answer shows the summary again",
        Step("4", state=st("registered", answers=ALL, changing="nights")),
        None,
        ["summary"],
        {"answers": {**ALL, "nights": 4}},
    ),
    (
        "'change' of an unknown question lists them",
        Step("change pizza", state=st("registered", answers=ALL)),
        None,
        ["which_question"],
        {},
    ),
    (
        "'cancel' asks first",
        Step("cancel", state=st("registered", answers=ALL)),
        None,
        ["cancel_confirm"],
        {"pending_cancel": True},
    ),
    (
        "'no' keeps the registration",
        Step("no", state=st("registered", answers=ALL, pending_cancel=True)),
        None,
        ["kept"],
        {},
    ),
    (
        "'status' shows the summary",
        Step("status", state=st("waiting", answers=ALL), shared={"waiting": [5]}),
        None,
        ["status"],
        {},
    ),
    (
        "a cancelled person rejoins with 'join'",
        Step("join", state=st("cancelled", answers=ALL)),
        "confirming",
        ["summary"],
        {},
    ),
    (
        "before opening: told when, timer set",
        Step("hello", gathering=LATER),
        "in_progress",
        ["not_open"],
        {"waiting_open": True},
    ),
    (
        "before opening: no questions yet, however often one writes",
        Step("hello", gathering=LATER, state=st("in_progress", waiting_open=True)),
        None,
        ["not_open"],
        {"waiting_open": True},
    ),
    (
        "opened while the timer was pending: the questions come",
        Step(
            "hello",
            gathering=LATER,
            now=datetime(2027, 4, 2, tzinfo=UTC),
            state=st("in_progress", waiting_open=True),
        ),
        None,
        ["welcome", "question"],
        {"waiting_open": None},
    ),
    (
        "by email 'change 2' sends a one-question form",
        Step("change 2", channel=Channel.EMAIL, state=st("registered", answers=ALL)),
        None,
        ["form"],
        {"changing": "nights"},
    ),
]


@pytest.mark.parametrize(
    ("name", "step", "status", "sent", "subset"), CASES, ids=[c[0] for c in CASES]
)
def test_steps(
    name: str, step: Step, status: str | None, sent: list[str], subset: dict[str, Any]
) -> None:
    outcome = step.run()
    assert templates(outcome) == sent
    effective = outcome.status or step.state.get("status")
    assert effective == (status or step.state.get("status"))
    state = outcome.state if outcome.state is not None else step.state
    for key, value in subset.items():
        assert state.get(key) == value, key


def test_choice_questions_are_polls_in_chat() -> None:
    outcome = Step("hello").run()
    poll = outcome.send[1]
    assert poll.kind == OutKind.POLL
    assert poll.options == ("vegan", "vegetarian", "omnivore")


def test_poll_vote_and_reaction_answer_the_asked_question() -> None:
    vote = Step(
        kind=InboundKind.CHOICE,
        fields={"choice": "3"},
        state=st("in_progress", answers={}, asked="diet"),
    ).run()
    assert vote.state is not None and vote.state["answers"] == {"diet": "omnivore"}
    reaction = Step(
        kind=InboundKind.CHOICE,
        fields={"choice": "yes"},
        state=st("in_progress", answers={"diet": "vegan", "nights": 1}, asked="car"),
    ).run()
    assert reaction.state is not None and reaction.state["answers"]["car"] is True


def test_reaction_on_the_summary_confirms() -> None:
    outcome = Step(
        kind=InboundKind.CHOICE, fields={"choice": "yes"}, state=st("confirming", answers=ALL)
    ).run()
    assert outcome.status == "registered"


def test_email_numbered_answers_reask_only_missing_and_invalid() -> None:
    outcome = Step(
        channel=Channel.EMAIL,
        state=st("in_progress", answers={}),
        fields={"answers": {1: "vegan", 2: "12", 3: "yes"}},
    ).run()
    assert outcome.state is not None
    # The optional question left blank counts as skipped; "seats" is new (car = yes).
    assert outcome.state["answers"] == {"diet": "vegan", "car": True, "notes": None}
    [form] = outcome.send
    asked = [(q["id"], (q["problem"] or {}).get("code")) for q in form.context["questions"]]
    assert asked == [("nights", "number"), ("seats", None)]


def test_email_free_text_answers_a_single_pending_question() -> None:
    answers = {k: v for k, v in ALL.items() if k != "nights"}
    outcome = Step("3", channel=Channel.EMAIL, state=st("in_progress", answers=answers)).run()
    assert outcome.status == "confirming"


def test_email_free_text_with_several_pending_resends_the_form() -> None:
    outcome = Step("I'm vegan", channel=Channel.EMAIL, state=st("in_progress", answers={})).run()
    assert templates(outcome) == ["form"]
    assert outcome.send[0].context["note"] == "no_answers"


def test_edit_changes_the_answer_the_edited_message_gave() -> None:
    state = st("registered", answers=ALL, answered_by={"$orig": "nights"})
    outcome = Step("2", kind=InboundKind.EDIT, state=state, fields={"replaces": "$orig"}).run()
    assert outcome.state is not None and outcome.state["answers"]["nights"] == 2
    assert templates(outcome) == ["summary"]


def test_redaction_keeps_the_answer_and_explains() -> None:
    state = st("registered", answers=ALL, answered_by={"$orig": "nights"})
    outcome = Step(kind=InboundKind.REDACTION, state=state, fields={"replaces": "$orig"}).run()
    assert templates(outcome) == ["redacted"]
    assert outcome.state is None


def test_cancel_frees_the_seat_sends_cancel_invite_and_offers_it() -> None:
    state = st(
        "registered",
        answers=ALL,
        pending_cancel=True,
        sequence=0,
        invite_uid="camp-registration-5@gathering-gateway",
    )
    outcome = Step("yes", state=state, shared={"registered": [5, 1], "waiting": [7, 8]}).run()
    assert outcome.status == "cancelled"
    [message] = outcome.send
    assert message.invite is not None
    assert (message.invite.method, message.invite.sequence) == ("CANCEL", 1)
    assert outcome.shared is not None
    assert outcome.shared["registered"] == [1]
    assert outcome.shared["waiting"] == [8]
    assert list(outcome.shared["offers"]) == ["7"]
    [event] = outcome.emit
    assert (event.person, event.name) == (7, "offer_seat")
    assert event.payload["expires_at"] == (NOW + timedelta(hours=48)).isoformat()


def test_status_reads_the_seats_without_writing_them() -> None:
    """The waiting list's place is shown; the seats, read but not changed, are not written."""
    state = st("waiting", answers=ALL)
    outcome = Step("status", state=state, shared={"registered": [1], "waiting": [7, 5]}).run()
    [message] = outcome.send
    assert message.context["place"] == 2
    assert outcome.shared is None


def test_offer_event_sets_the_hold_timer() -> None:
    expires = NOW + timedelta(hours=48)
    outcome = Step(
        "offer_seat",
        kind=InboundKind.COMMAND,
        state=st("waiting", answers=ALL),
        shared={"registered": [1], "offers": {"5": expires.isoformat()}},
    ).run()
    assert outcome.status == "offered"
    assert [(t.name, t.due_at) for t in outcome.timers] == [("hold", expires)]


@pytest.mark.parametrize(
    ("late", "expected"), [(timedelta(hours=-1), "registered"), (timedelta(hours=1), "cancelled")]
)
def test_accepting_an_offer_depends_on_the_hold_not_on_the_timer(
    late: timedelta, expected: str
) -> None:
    expires = NOW + late * -1
    outcome = Step(
        "yes",
        state=st("offered", answers=ALL, offer_expires=expires.isoformat()),
        shared={"registered": [1], "waiting": [9], "offers": {"5": expires.isoformat()}},
    ).run()
    assert outcome.status == expected
    if expected == "cancelled":
        assert templates(outcome) == ["offer_expired"]
        assert [e.person for e in outcome.emit] == [9]


def test_hold_timer_that_fires_late_expires_the_offer_now() -> None:
    expires = NOW - timedelta(days=3)
    outcome = Step(
        "hold",
        kind=InboundKind.TICK,
        now=NOW,
        state=st("offered", answers=ALL, offer_expires=expires.isoformat()),
        shared={"registered": [1], "waiting": [9], "offers": {"5": expires.isoformat()}},
        fields={"payload": {"due_at": expires.isoformat()}},
    ).run()
    assert outcome.status == "cancelled"
    assert outcome.shared is not None and outcome.shared["offers"] == {
        "9": (NOW + timedelta(hours=48)).isoformat()
    }


@pytest.mark.parametrize(
    ("partstat", "sequence", "sent", "attendance"),
    [
        ("ACCEPTED", 2, [], "accepted"),
        ("TENTATIVE", 2, [], "tentative"),
        ("DECLINED", 2, ["declined_ask"], "declined"),
        ("ACCEPTED", 1, [], None),
    ],
)
def test_calendar_replies(
    partstat: str, sequence: int, sent: list[str], attendance: str | None
) -> None:
    uid = "camp-registration-5@gathering-gateway"
    outcome = Step(
        kind=InboundKind.CALENDAR_REPLY,
        state=st("registered", answers=ALL, sequence=2, invite_uid=uid),
        shared={"registered": [5]},
        fields={"calendar": CalendarAnswer(uid, partstat, sequence)},
    ).run()
    assert templates(outcome) == sent
    assert outcome.state is not None
    assert outcome.state.get("attendance") == attendance
    assert outcome.shared is None  # a reply never frees the seat by itself
    if attendance is None:
        assert outcome.state["history"][-1]["event"] == "calendar_stale"


def test_after_closing_nobody_new_can_confirm() -> None:
    closed = G.model_copy(
        update={
            "registration": G.registration.model_copy(update={"closes_at": datetime(2027, 2, 1)})
        }
    )
    assert templates(Step("hello", gathering=closed).run()) == ["closed"]
    outcome = Step("yes", gathering=closed, state=st("confirming", answers=ALL)).run()
    assert templates(outcome) == ["closed"]
    assert outcome.shared is None


def test_invite_of_an_all_day_gathering() -> None:
    outcome = Step("yes", state=st("confirming", answers=ALL)).run()
    invite = outcome.send[0].invite
    assert invite is not None
    assert invite.all_day and invite.tzid == "Europe/Berlin"
    assert invite.start.isoformat() == "2027-07-14T00:00:00+02:00"
    assert invite.end.date() == date(2027, 7, 18)
    assert (invite.method, invite.summary, invite.location) == (
        "REQUEST",
        "Summer Camp",
        "Hof Wiesengrund",
    )


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("help", "help"),
        ("?", "help"),
        ("Status", "status"),
        ("change 3", "change"),
        ("ändern diet", "change"),
        ("cancel", "cancel"),
        ("annuler", "cancel"),
        ("yes", "yes"),
        ("Ja!", "yes"),
        ("confirm", "confirm"),
        ("hello", "start"),
        ("status quo", None),
        ("I cancel nothing", None),
    ],
)
def test_commands(text: str, command: str | None) -> None:
    found = read_command(text)
    assert (found.name if found else None) == command


def test_gathering_run_ignores_messages() -> None:
    message = InboundMessage(
        channel=Channel.INTERNAL, external_id="x", kind=InboundKind.COMMAND, received_at=NOW
    )
    ctx = context(
        FLOW,
        message=message,
        now=NOW,
        gathering=G,
        person=PersonInfo(PersonId(0), "", "en", None),
    )
    assert FLOW.step(ctx).ignored


@pytest.mark.parametrize(
    ("kind", "text", "fields", "status", "expected"),
    [
        (InboundKind.TEXT, "anything", {}, "in_progress", True),
        (InboundKind.TEXT, "yes", {}, "confirming", True),
        (InboundKind.TEXT, "see you there!", {}, "registered", False),
        (InboundKind.TEXT, "change 3", {}, "registered", True),
        (InboundKind.TEXT, "yes", {}, "registered", True),
        (InboundKind.TEXT, "", {"answers": {1: "x"}}, "registered", True),
        (InboundKind.CHOICE, "", {"choice": "2"}, "registered", False),
        (InboundKind.CHOICE, "", {"choice": "yes"}, "registered", True),
        (InboundKind.EDIT, "2", {"replaces": "$x"}, "registered", True),
    ],
)
def test_wants(
    kind: InboundKind, text: str, fields: dict[str, Any], status: str, expected: bool
) -> None:
    message = InboundMessage(
        channel=Channel.MATRIX, external_id="x", kind=kind, received_at=NOW, text=text, **fields
    )
    assert FLOW.wants(message, status) is expected

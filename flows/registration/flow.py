"""The registration flow: questions, summary, confirmation, seats, waiting list, changes.

A person says hello on any channel and is asked the gathering's questions: in a chat one at
a time (choice questions as polls), by email as one numbered form they answer inline. Then
they see a numbered summary and confirm with "yes"; "change 3", "cancel", "status" and
"help" work at any time. Seats, the waiting list and held offers are in
`registration_seating.py`, the state layout in `registration_turn.py`.

Simulated participants (the demo) register with: "hello", then one reply per question (a
chat) or one reply with `answers={number: text}` (email), then "yes".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from flows.base import CONFIG_CHANGED, Outcome, StepContext
from flows.common.forms import (
    Problem,
    applicable,
    apply_numbered,
    find_question,
    parse_answer,
    parse_vote,
    question_view,
    summary_view,
)
from flows.config import Question
from flows.registration.seating import (
    accept_offer,
    calendar_reply,
    cancel,
    confirm,
    hold_timer,
    leave_quietly,
    receive_offer,
    status_context,
    window_closed,
)
from flows.registration.text import Command, ask_form, ask_one, read_command
from flows.registration.turn import ACTIVE, Turn
from gateway.model import InboundKind, InboundMessage


class Registration:
    name: ClassVar[str] = "registration"
    reads: ClassVar[tuple[str, ...]] = ()
    #: A larger capacity offers its free seats to the waiting list at once.
    config_aware: ClassVar[bool] = True

    def wants(self, message: InboundMessage, status: str) -> bool:
        # The engine asks the most recently active run first, so claiming "yes"/"no" here
        # only wins when registration asked the last question (e.g. "cancel?").
        if status in ACTIVE or message.answers:
            return True
        if message.kind in (InboundKind.EDIT, InboundKind.REDACTION):
            return bool(status)
        if message.kind == InboundKind.CHOICE:
            return message.choice in ("yes", "no")
        return message.kind == InboundKind.TEXT and read_command(message.text) is not None

    def step(self, ctx: StepContext) -> Outcome:
        if ctx.is_gathering_run:
            if ctx.message.kind == InboundKind.COMMAND and ctx.message.text == CONFIG_CHANGED:
                turn = Turn.start(ctx)
                turn.offer_seats()
                return turn.finish()
            return Outcome(ignored=True)
        handler = _HANDLERS.get(ctx.message.kind)
        if handler is None:
            return Outcome(ignored=True)
        turn = Turn.start(ctx)
        handler(turn)
        return turn.finish()


def on_text(turn: Turn) -> None:
    on_words(turn, turn.ctx.message.text)


def on_words(turn: Turn, text: str) -> None:
    command = read_command(text)
    if turn.state.pop("pending_cancel", False) and command and command.name in ("yes", "no"):
        if command.name == "yes" and not turn.ctx.message.proven:
            turn.state["pending_cancel"] = True
            ask_for_proof(turn, "cancel")
        elif command.name == "yes":
            cancel(turn)
        else:
            turn.say("kept", status=turn.status)
        return
    if not turn.status:
        begin(turn)
    elif turn.state.get("waiting_open"):
        if not window_closed(turn):  # opened while the opening timer was not yet handled
            turn.state.pop("waiting_open")
            ask_next(turn, first=True)
    elif command and command.name in ("help", "status", "cancel", "change", "unsubscribe"):
        run_command(turn, command)
    elif turn.ctx.message.answers and turn.status != "cancelled":
        if changes_a_registration(turn):
            ask_for_proof(turn, "change")
        else:
            take_numbered(turn)
    elif turn.status == "confirming" and turn.pending():
        # The organisers added a question after the summary was shown: ask it before the
        # person can confirm, so every registration answers every current question.
        turn.status = "in_progress"
        ask_next(turn)
    elif turn.status in ("in_progress",) or turn.state.get("changing"):
        if changes_a_registration(turn):
            ask_for_proof(turn, "change")
        else:
            answer_text(turn, text, command)
    else:
        by_status(turn, command)


def run_command(turn: Turn, command: Command) -> None:
    if command.name == "help":
        current = current_question(turn) if turn.status == "in_progress" else None
        view = question_view(current, turn.questions) if current else None
        turn.say("help", status=turn.status, question=view)
    elif command.name == "status":
        turn.say("status", items=summary_view(turn.questions, turn.answers), **status_context(turn))
    elif command.name == "cancel" and turn.status != "cancelled":
        turn.state["pending_cancel"] = True
        turn.say("cancel_confirm", status=turn.status)
    elif command.name == "cancel":
        turn.say("status", items=summary_view(turn.questions, turn.answers), **status_context(turn))
    elif command.name == "unsubscribe":
        # Announcements stop; what concerns the person's own seat still reaches them.
        turn.state["announcements"] = False
        turn.say("unsubscribed")
    else:
        begin_change(turn, command.argument)


def by_status(turn: Turn, command: Command | None) -> None:
    """A message that is not an answer: what it means depends on where the person is."""
    name = command.name if command else ""
    decides = turn.status in ("confirming", "offered") and name in ("yes", "confirm", "no")
    if decides and not turn.ctx.message.proven:
        ask_for_proof(turn, "confirm" if turn.status == "confirming" else f"offer_{name}")
    elif turn.status == "confirming" and name in ("yes", "confirm"):
        confirm(turn)
    elif turn.status == "offered" and name in ("yes", "confirm"):
        accept_offer(turn)
    elif turn.status == "offered" and name == "no":
        cancel(turn, "offer_declined")
    elif turn.status == "cancelled" and name in ("yes", "confirm", "start"):
        turn.status = "in_progress"
        ask_next(turn)
    elif turn.status in ("confirming", "waiting", "offered"):
        turn.say("status", items=summary_view(turn.questions, turn.answers), **status_context(turn))
    else:
        turn.say("help", status=turn.status, question=None)


def changes_a_registration(turn: Turn) -> bool:
    """Whether this message would change the answers of someone already registered (or
    waiting, or offered a seat) without proof that it comes from them."""
    settled = turn.status in ("registered", "waiting", "offered", "confirming")
    return settled and not turn.ctx.message.proven


def ask_for_proof(turn: Turn, action: str) -> None:
    """Ask, in a message of ours that the person can answer, to say it again. The sender's
    text is not repeated: it may not be theirs."""
    turn.note("unproven", action=action, message=turn.ctx.message.external_id)
    turn.say("prove", action=action)


def begin(turn: Turn) -> None:
    """First contact: welcome the person and ask, unless registration is not open."""
    registration = turn.ctx.gathering.registration
    if window_closed(turn):
        if registration.opens_at is not None and turn.ctx.now < turn.local(registration.opens_at):
            turn.status = "in_progress"
            turn.state["waiting_open"] = True
            turn.timer("opens", turn.local(registration.opens_at))
        return
    turn.status = "in_progress"
    ask_next(turn, first=True)


def on_tick(turn: Turn) -> None:
    name = turn.ctx.message.text
    if name == "hold":
        hold_timer(turn)
    elif name == "opens" and turn.state.pop("waiting_open", False):
        ask_next(turn, first=True)


def on_event(turn: Turn) -> None:
    if turn.ctx.message.text == "offer_seat":
        receive_offer(turn)
    elif turn.ctx.message.text == "forget":
        leave_quietly(turn)
    else:
        turn.note("unknown_event", name=turn.ctx.message.text)


def replied_question(turn: Turn) -> Question | None:
    """The question of our message this one replies to (a poll vote, a chat reply to a
    question), if it still exists and applies: it is answered, whatever was asked since."""
    asked = turn.ctx.message.questions
    question = turn.ctx.gathering.question(asked[0]) if len(asked) == 1 else None
    if question is None or not applicable(question, turn.questions, turn.answers):
        return None
    return question


def current_question(turn: Turn) -> Question | None:
    """The question a free-text reply answers: the one being changed, or the one asked."""
    changing = changing_question(turn)
    if changing is not None:
        return changing
    todo = turn.pending()
    if turn.in_chat:
        asked = next((q for q in todo if q.id == turn.state.get("asked")), None)
        return asked or (todo[0] if todo else None)
    return todo[0] if len(todo) == 1 else None


def changing_question(turn: Turn) -> Question | None:
    """The question the person asked to change, while it still exists and applies."""
    question = turn.ctx.gathering.question(str(turn.state.get("changing", "")))
    if question is None or not applicable(question, turn.questions, turn.answers):
        turn.state.pop("changing", None)
        return None
    return question


def ask_next(
    turn: Turn,
    *,
    first: bool = False,
    problems: Mapping[str, Problem] | None = None,
    note: str = "",
) -> None:
    """Ask what is still open (or invalid), or show the summary when everything is answered.

    Questions with a problem come first, so a re-prompt is never lost behind a new question.
    """
    problems = problems or {}
    changing = changing_question(turn)
    if changing is not None:
        todo = [changing]
    else:
        todo = [q for q in turn.questions if q.id in problems]
        todo += [q for q in turn.pending() if q.id not in problems]
    if not todo:
        turn.state.pop("asked", None)
        if first:
            turn.say("welcome", questions=0)
        show_summary(turn)
    elif turn.in_chat:
        if first:
            turn.say("welcome", questions=len(todo))
        turn.state["asked"] = todo[0].id
        turn.outcome.send.append(
            ask_one(turn.person, todo[0], turn.questions, problems.get(todo[0].id))
        )
    else:
        turn.state.pop("asked", None)
        turn.outcome.send.append(
            ask_form(turn.person, todo, turn.questions, problems, first=first, note=note)
        )


def show_summary(turn: Turn) -> None:
    """All answered: ask to confirm (new people), or show what changed (everyone else)."""
    items = summary_view(turn.questions, turn.answers)
    if turn.status in ("in_progress", "confirming"):
        turn.status = "confirming"
        turn.say("summary", items=items, mode="confirm")
    else:
        turn.say("summary", items=items, mode="updated", **status_context(turn))


def answer_text(turn: Turn, text: str, command: Command | None) -> None:
    current = replied_question(turn) or current_question(turn)
    if current is None or (command is not None and command.name == "start"):
        ask_next(turn, note="" if current else "no_answers")
        return
    parsed = parse_answer(current, text, reference=turn.reference)
    if parsed.problem is not None:
        turn.state["asked"] = current.id
        ask_next(turn, problems={current.id: parsed.problem})
        return
    record(turn, current, parsed.value)
    ask_next(turn)


def record(turn: Turn, question: Question, value: object) -> None:
    turn.answers[question.id] = value
    if turn.state.get("changing") == question.id:
        turn.state.pop("changing")
    if turn.ctx.message.kind in (InboundKind.TEXT, InboundKind.EDIT):
        turn.remember_answer(turn.ctx.message.replaces or turn.ctx.message.external_id, question.id)


def take_numbered(turn: Turn) -> None:
    """An email reply with answers under the numbered questions."""
    numbered = turn.ctx.message.answers
    asked = turn.pending()
    answers, problems = apply_numbered(
        turn.questions,
        turn.answers,
        numbered,
        reference=turn.reference,
        numbering=turn.ctx.message.questions,
    )
    # An optional question of the form left blank is a "skip": asking again would nag.
    for question in asked:
        if not question.required and question.id not in answers and question.id not in problems:
            answers[question.id] = None
    turn.state["answers"] = answers
    changing = turn.state.get("changing")
    if (
        changing in answers
        and changing not in problems
        and answers[changing] != turn.ctx.state.get("answers", {}).get(changing, object())
    ):
        turn.state.pop("changing")
    ask_next(turn, problems=problems)


def begin_change(turn: Turn, argument: str) -> None:
    question = find_question(turn.questions, turn.answers, argument) if argument else None
    if question is None:
        turn.say(
            "which_question", argument=argument, items=summary_view(turn.questions, turn.answers)
        )
        return
    turn.state["changing"] = question.id
    turn.state["asked"] = question.id
    ask_next(turn, note="change")


def on_choice(turn: Turn) -> None:
    """A poll vote answers its poll's question (an older poll too); a ✅/❌ reaction
    elsewhere is yes/no."""
    choice = turn.ctx.message.choice or ""
    answering = turn.status == "in_progress" or "changing" in turn.state
    replied = replied_question(turn) if turn.status != "cancelled" else None
    current = replied or (current_question(turn) if answering else None)
    if current is None:
        on_words(turn, choice)
        return
    parsed = parse_vote(current, choice)
    if parsed.problem is not None:
        ask_next(turn, problems={current.id: parsed.problem})
        return
    record(turn, current, parsed.value)
    if replied is not None and still_asking_another(turn, replied):
        # A second thought on an earlier poll: confirm it; the open question is still there.
        turn.say("answer_updated", question=question_view(replied, turn.questions))
        return
    ask_next(turn)


def still_asking_another(turn: Turn, answered: Question) -> bool:
    """Whether, in a chat, a question other than `answered` is asked and still open."""
    asked = turn.state.get("asked")
    open_ids = {q.id for q in turn.pending()}
    return turn.status == "in_progress" and asked != answered.id and asked in open_ids


def on_edit(turn: Turn) -> None:
    """A chat edit of an earlier answer changes that answer; other edits read as new text."""
    replaces = turn.ctx.message.replaces or ""
    question_id = turn.state.get("answered_by", {}).get(replaces)
    question = turn.ctx.gathering.question(question_id) if question_id else None
    if question is None or not applicable(question, turn.questions, turn.answers):
        on_text(turn)
        return
    parsed = parse_answer(question, turn.ctx.message.text, reference=turn.reference)
    if parsed.problem is not None:
        turn.state["changing"] = question.id
        ask_next(turn, problems={question.id: parsed.problem})
        return
    record(turn, question, parsed.value)
    if turn.status == "in_progress":
        turn.say("answer_updated", question=question_view(question, turn.questions))
    ask_next(turn)


def on_redaction(turn: Turn) -> None:
    """Deleting a chat message does not delete the answer; tell the person how to change it."""
    question_id = turn.state.get("answered_by", {}).get(turn.ctx.message.replaces or "")
    question = turn.ctx.gathering.question(question_id) if question_id else None
    if question is None:
        turn.note("redaction_ignored", replaces=turn.ctx.message.replaces)
        return
    turn.say("redacted", question=question_view(question, turn.questions))


_HANDLERS: dict[InboundKind, Callable[[Turn], None]] = {
    InboundKind.TEXT: on_text,
    InboundKind.CHOICE: on_choice,
    InboundKind.EDIT: on_edit,
    InboundKind.REDACTION: on_redaction,
    InboundKind.CALENDAR_REPLY: calendar_reply,
    InboundKind.TICK: on_tick,
    InboundKind.COMMAND: on_event,
}

"""The registration flow: questions, summary, confirmation, seats, waiting list, changes.

A person says hello on any channel and is asked the gathering's questions: in a chat one at
a time (choice questions as polls), by email as one numbered form they answer inline. Then
they see a numbered summary and confirm with "yes"; "change 3", "cancel", "status" and
"help" work at any time. Seats, the waiting list and held offers are in
`registration_seating.py`, the state's model in `flows/registration/state.py`.

What each message does in each status (the statuses and which may follow which are in
`flows/registration/turn.py`; "yes" here means a proven one, see `ask_for_proof`):

    status       hello / answer        "yes"             "cancel", "yes"  offer_seat  hold ends
    (none)       → in_progress, ask    –                 –                –           –
    in_progress  record, ask next;     (an answer)       → cancelled      –           –
                 all done → confirming
    confirming   "change N" → ask it   → registered, or  → cancelled      –           –
                                         waiting (full)
    registered   "change N", status    status            → cancelled,     –           –
                                                            CANCEL invite
    waiting      "change N", status    status            → cancelled      → offered   –
    offered      "change N", status    → registered      → cancelled      –           → cancelled
                                         ("no": cancelled)
    cancelled    status                → in_progress     –                –           –

Simulated participants (the demo) register with: "hello", then one reply per question (a
chat) or one reply with `answers={number: text}` (email), then "yes".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from flows.base import CONFIG_CHANGED, Outcome, StepContext
from flows.common.forms import question_view, summary_view
from flows.common.questionnaire import Questionnaire
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
from flows.registration.seats import Seats
from flows.registration.state import Left, RegistrationRun
from flows.registration.text import Command, read_command
from flows.registration.turn import ACTIVE, Status, Turn
from gateway.model import InboundKind, InboundMessage


class Registration:
    name: ClassVar[str] = "registration"
    reads: ClassVar[tuple[str, ...]] = ()
    state_model: ClassVar[type[RegistrationRun]] = RegistrationRun
    shared_model: ClassVar[type[Seats]] = Seats
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

    def step(self, ctx: StepContext[RegistrationRun, Seats]) -> Outcome:
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
    pending_cancel, turn.state.pending_cancel = turn.state.pending_cancel, False
    if pending_cancel and command and command.name in ("yes", "no"):
        if command.name == "yes" and not turn.ctx.message.proven:
            turn.state.pending_cancel = True
            ask_for_proof(turn, "cancel")
        elif command.name == "yes":
            cancel(turn)
        else:
            turn.say("kept", status=turn.status)
        return
    if not turn.status:
        begin(turn)
    elif turn.state.waiting_open:
        if not window_closed(turn):  # opened while the opening timer was not yet handled
            turn.state.waiting_open = False
            ask_next(turn, first=True)
    elif command and command.name in ("help", "status", "cancel", "change", "unsubscribe"):
        run_command(turn, command)
    elif turn.ctx.message.answers and turn.status != "cancelled":
        if changes_a_registration(turn):
            ask_for_proof(turn, "change")
        else:
            form(turn).take_numbered()
    elif turn.status == "confirming" and turn.pending():
        # The organisers added a question after the summary was shown: ask it before the
        # person can confirm, so every registration answers every current question.
        turn.status = Status.IN_PROGRESS
        ask_next(turn)
    elif turn.status in ("in_progress",) or turn.state.changing:
        if changes_a_registration(turn):
            ask_for_proof(turn, "change")
        else:
            restart = command is not None and command.name == "start"
            form(turn).answer_text(text, restart=restart)
    else:
        by_status(turn, command)


def run_command(turn: Turn, command: Command) -> None:
    if command.name == "help":
        current = form(turn).current_question() if turn.status == "in_progress" else None
        view = question_view(current, turn.questions) if current else None
        turn.say("help", status=turn.status, question=view)
    elif command.name == "status":
        turn.say("status", items=summary_view(turn.questions, turn.answers), **status_context(turn))
    elif command.name == "cancel" and turn.status != "cancelled":
        turn.state.pending_cancel = True
        turn.say("cancel_confirm", status=turn.status)
    elif command.name == "cancel":
        turn.say("status", items=summary_view(turn.questions, turn.answers), **status_context(turn))
    elif command.name == "unsubscribe":
        # Announcements stop; what concerns the person's own seat still reaches them.
        turn.state.announcements = False
        turn.say("unsubscribed")
    else:
        form(turn).begin_change(command.argument)


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
        cancel(turn, Left.OFFER_DECLINED)
    elif turn.status == "cancelled" and name in ("yes", "confirm", "start"):
        turn.status = Status.IN_PROGRESS
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
            turn.status = Status.IN_PROGRESS
            turn.state.waiting_open = True
            turn.timer("opens", turn.local(registration.opens_at))
        return
    turn.status = Status.IN_PROGRESS
    ask_next(turn, first=True)


def on_tick(turn: Turn) -> None:
    name = turn.ctx.message.text
    if name == "hold":
        hold_timer(turn)
    elif name == "opens" and turn.state.waiting_open:
        turn.state.waiting_open = False
        ask_next(turn, first=True)


def on_event(turn: Turn) -> None:
    if turn.ctx.message.text == "offer_seat":
        receive_offer(turn)
    elif turn.ctx.message.text == "forget":
        leave_quietly(turn)
    else:
        turn.note("unknown_event", name=turn.ctx.message.text)


def form(turn: Turn) -> Questionnaire:
    return turn.form(lambda: show_summary(turn))


def ask_next(turn: Turn, *, first: bool = False, note: str = "") -> None:
    form(turn).ask_next(first=first, note=note)


def show_summary(turn: Turn) -> None:
    """All answered: ask to confirm (new people), or show what changed (everyone else)."""
    items = summary_view(turn.questions, turn.answers)
    if turn.status in ("in_progress", "confirming"):
        turn.status = Status.CONFIRMING
        turn.say("summary", items=items, mode="confirm")
    else:
        turn.say("summary", items=items, mode="updated", **status_context(turn))


def on_choice(turn: Turn) -> None:
    """A poll vote answers its poll's question; a ✅/❌ reaction elsewhere is yes/no."""
    if not form(turn).vote(settled=turn.status == "cancelled"):
        on_words(turn, turn.ctx.message.choice or "")


def on_edit(turn: Turn) -> None:
    """A chat edit of an earlier answer changes that answer; other edits read as new text."""
    if not form(turn).edit():
        on_text(turn)


def on_redaction(turn: Turn) -> None:
    if not form(turn).redaction():
        turn.note("redaction_ignored", replaces=turn.ctx.message.replaces)


_HANDLERS: dict[InboundKind, Callable[[Turn], None]] = {
    InboundKind.TEXT: on_text,
    InboundKind.CHOICE: on_choice,
    InboundKind.EDIT: on_edit,
    InboundKind.REDACTION: on_redaction,
    InboundKind.CALENDAR_REPLY: calendar_reply,
    InboundKind.TICK: on_tick,
    InboundKind.COMMAND: on_event,
}

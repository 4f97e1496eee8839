"""The debrief flow: reflection questions after the gathering, reminders, consent, closing.

After the gathering ends (`flows.debrief.times`), the gathering-level run asks everyone who
came — registered, and not declining the calendar invite — through the shared questionnaire:
in a chat one question at a time, by email one numbered form. The first question is who may
see the answers: the organisers only (the default), my crew too, or everyone without my
name. Reminders go only to those who have not finished, with a true progress line. At the
deadline the run closes: anonymised answers move into an unordered pool in the gathering's
state and leave the person's run (only the mark "has answered" stays), and each crew gets
the answers its members shared with it, in its room or email thread.

Native chat polls show who voted, so the debrief asks choice questions as text.

A person's run, what each message does in each status (the h11 idea: one table to read):

    status      prompt       remind           answer / edit / "change N"    close
    (none)      → asked      –                not ours                      –
    asked       –            reminder, re-ask questionnaire; done → answered  → closed
    answered    –            –                questionnaire (changes)        → closed
    closed      –            –                "the debrief has closed"       –

The gathering-level run: TICKs `prompt`, `remind.N`, `close` (set by `schedule` from the
gathering file), each done once (its mark in the state stops a repeat after a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from flows.base import Outcome, RunView, Schedule, StepContext
from flows.common.forms import AnswerValue
from flows.common.groups import ROOM_TEMPLATE, group_key
from flows.common.names import chosen_name
from flows.common.questionnaire import Questionnaire
from flows.common.words import fold, is_help
from flows.config import DebriefConfig, GatheringConfig, Question, QuestionType
from flows.debrief import times
from flows.debrief.state import DebriefRun, DebriefShared, Share, Status
from gateway.model import (
    GATHERING_SUBJECT,
    Channel,
    Emit,
    InboundKind,
    InboundMessage,
    Outgoing,
    OutKind,
    PersonId,
)

FLOW = "debrief"
__all__ = ["Debrief", "Share", "Status", "questions", "share_of", "share_question"]
Context = StepContext[DebriefRun, DebriefShared]

SHARE_QUESTION = "share"
SHARE_LABELS = {
    Share.ORGANISERS: "only the organisers",
    Share.CREW: "my crew and the organisers",
    Share.EVERYONE: "everyone, without my name",
}


def share_question(gathering: GatheringConfig) -> Question:
    """Asked first: who may see the answers. "My crew" only where crews were made."""
    offered = [Share.ORGANISERS, Share.EVERYONE]
    if gathering.crews is not None and _config(gathering).crew_sharing:
        offered.insert(1, Share.CREW)
    return Question(
        id=SHARE_QUESTION,
        type=QuestionType.SINGLE_CHOICE,
        prompt="Who may see your answers?",
        help='You can change this until the debrief closes: write "change 1".',
        options=[SHARE_LABELS[s] for s in offered],
    )


def questions(gathering: GatheringConfig) -> list[Question]:
    return [share_question(gathering), *_config(gathering).questions]


def share_of(answers: Mapping[str, Any]) -> Share:
    """The person's choice; organisers only until they chose (and for anything unknown)."""
    label = answers.get(SHARE_QUESTION)
    return next((s for s, text in SHARE_LABELS.items() if text == label), Share.ORGANISERS)


def _config(gathering: GatheringConfig) -> DebriefConfig:
    assert gathering.debrief is not None
    return gathering.debrief


class Debrief:
    name: ClassVar[str] = "debrief"
    state_model: ClassVar[type[DebriefRun]] = DebriefRun
    shared_model: ClassVar[type[DebriefShared]] = DebriefShared
    #: Who came (registration), which crew they were in (crews), and who has answered.
    reads: ClassVar[tuple[str, ...]] = ("registration", "crews", "debrief")
    #: Answers may be anonymous: the audit log records that a message came, not its text.
    audit_text: ClassVar[bool] = False

    def wants(self, message: InboundMessage, status: str) -> bool:
        if status == Status.ASKED:
            return True
        if status == Status.ANSWERED:
            if message.answers or message.kind in (InboundKind.EDIT, InboundKind.REDACTION):
                return True
            return message.kind == InboundKind.TEXT and _command(message.text) is not None
        if status == Status.CLOSED:
            # A late reflection ("sorry, late: I loved…") is told the debrief closed; short
            # messages are commands of other flows ("status", "change diet") and pass on.
            return message.kind == InboundKind.TEXT and len(message.text.split()) > 3
        return False

    def schedule(self, gathering: GatheringConfig, state: DebriefShared, now: datetime) -> Schedule:
        if gathering.debrief is None:
            return {times.PROMPT: None, times.CLOSE: None}
        planned: dict[str, datetime | None] = {}
        if not state.prompted:
            planned[times.PROMPT] = times.prompt_at(gathering, gathering.debrief)
        done = set(state.reminded or [])
        for name, at in times.reminders(gathering, gathering.debrief).items():
            planned[name] = None if name in done else at
        for n in range(1, 6):  # reminders the organisers removed, or past the deadline
            planned.setdefault(f"{times.REMIND}.{n}", None)
        if not state.closed:
            planned[times.CLOSE] = times.deadline(gathering, gathering.debrief)
        return planned

    def step(self, ctx: Context) -> Outcome:
        if ctx.gathering.debrief is None:
            return Outcome(ignored=True)
        if ctx.is_gathering_run:
            return _gathering_step(ctx)
        return _person_step(ctx)


# -- the gathering-level run ------------------------------------------------------------


def _gathering_step(ctx: Context) -> Outcome:
    message = ctx.message
    if message.kind != InboundKind.TICK:
        return Outcome(ignored=True)
    state = ctx.shared  # the step's own copy
    if message.text == times.PROMPT and not state.prompted:
        return _prompt_everyone(ctx, state)
    if message.text.startswith(f"{times.REMIND}.") and _open(state):
        reminded = state.reminded = state.reminded or []
        if message.text in reminded:
            return Outcome(ignored=True)
        reminded.append(message.text)
        return _remind(ctx, state)
    if message.text == times.CLOSE and _open(state):
        return _close(ctx, state)
    return Outcome(ignored=True)


def _open(state: DebriefShared) -> bool:
    return state.prompted is not None and state.closed is None


def came(ctx: Context) -> list[PersonId]:
    """Who is asked: registered, and not declining the gathering's calendar invite."""
    runs = ctx.peers.get("registration", {})
    return sorted(
        p
        for p, run in runs.items()
        if run.status == "registered" and run.state.get("attendance") != "declined"
    )


def _prompt_everyone(ctx: Context, state: DebriefShared) -> Outcome:
    people = came(ctx)
    state.prompted = ctx.now
    state.asked = people
    deadline = times.deadline(ctx.gathering, _config(ctx.gathering)).isoformat()
    return Outcome(
        shared=state,
        status="open",
        emit=[Emit(FLOW, p, "prompt", {"deadline": deadline}) for p in people],
    )


def _answered(ctx: Context) -> set[str]:
    runs = ctx.peers.get(FLOW, {})
    return {str(p) for p, run in runs.items() if run.state.get("finished")}


def crews_of(ctx: Context) -> list[list[str]]:
    """The approved crews' members (ids as strings), if crews were made."""
    approved = ctx.shared_of.get("crews", {}).get("approved")
    if not approved:
        return []
    members: list[list[str]] = [[] for _ in range(int(approved.get("crews", 0)))]
    for person, crew in approved.get("assignment", {}).items():
        if 0 <= int(crew) < len(members):
            members[int(crew)].append(str(person))
    return [sorted(m, key=int) for m in members]


def _remind(ctx: Context, state: DebriefShared) -> Outcome:
    asked = [str(p) for p in state.asked or []]
    answered = _answered(ctx)
    crew_of = {p: crew for crew in crews_of(ctx) for p in crew}
    emit = []
    for person in asked:
        if person in answered:
            continue
        crew = [p for p in crew_of.get(person, []) if p in asked]
        progress = {
            "answered": len(answered & set(asked)),
            "asked": len(asked),
            "crew_answered": len(answered & set(crew)),
            "crew_size": len(crew),
        }
        emit.append(Emit(FLOW, PersonId(int(person)), "remind", progress))
    return Outcome(shared=state, emit=emit)


def _close(ctx: Context, state: DebriefShared) -> Outcome:
    """The deadline: pool the anonymised answers, collate each crew's, close every run."""
    runs = ctx.peers.get(FLOW, {})
    config = _config(ctx.gathering)
    pool: dict[str, list[AnswerValue]] = {q.id: [] for q in config.questions}
    for run in runs.values():
        answers = run.state.get("answers", {})
        if share_of(answers) != Share.EVERYONE:
            continue
        for question in config.questions:
            if answers.get(question.id) is not None:
                pool[question.id].append(answers[question.id])
    # Sorted, so the pool's order says nothing about who answered when, and each answer is
    # its own entry: answers to two questions cannot be joined into one person's.
    state.anonymous = {q: sorted(values, key=_sort_key) for q, values in pool.items()}
    state.anonymous_people = sum(
        1 for run in runs.values() if share_of(run.state.get("answers", {})) == Share.EVERYONE
    )
    state.closed = ctx.now
    sends = _crew_debriefs(ctx, runs)
    asked = state.asked or []
    return Outcome(
        shared=state,
        status="closed",
        send=sends,
        emit=[Emit(FLOW, p, "close", {}) for p in asked],
    )


def _sort_key(value: Any) -> str:
    return fold(str(value))


def _crew_debriefs(ctx: Context, runs: Mapping[PersonId, RunView]) -> list[Outgoing]:
    """Each crew gets, in its room or thread, the answers its members shared with it."""
    approved = ctx.shared_of.get("crews", {}).get("approved") or {}
    registration = ctx.peers.get("registration", {})
    config = _config(ctx.gathering)
    round_no = int(approved.get("round", 1))
    sends = []
    for number, members in enumerate(crews_of(ctx)):
        shared = []
        for member in members:
            run = runs.get(PersonId(int(member)))
            answers = run.state.get("answers", {}) if run else {}
            if share_of(answers) != Share.CREW:
                continue
            items = [
                {"prompt": q.prompt, "value": answers[q.id], "type": q.type.value}
                for q in config.questions
                if answers.get(q.id) is not None
            ]
            name = chosen_name(
                ctx.gathering, PersonId(int(member)), registration.get(PersonId(int(member)))
            )
            shared.append({"name": name, "answers": items})
        if not shared:
            continue
        sends.append(
            Outgoing(
                to=GATHERING_SUBJECT,
                template=f"{FLOW}/crew",
                context={
                    "crew": {"number": number + 1, "round": round_no},
                    "call": None,
                    "shared": shared,
                },
                kind=OutKind.GROUP,
                group=group_key(ctx.gathering.slug, round_no, number),
                members=tuple(PersonId(int(m)) for m in members),
                is_reply=False,
                room=ROOM_TEMPLATE,
            )
        )
    return sends


# -- a person's run ---------------------------------------------------------------------


def _command(text: str) -> str | None:
    """The few words a person who finished may send: help, status, change N."""
    words = fold(text).strip(" .!").split()
    if is_help(text):
        return "help"
    if words and words[0] in ("status", "change", "edit", "add"):
        return words[0]
    return None


class _Person:
    """One step of a person's run: the state in the making and what to send."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # The context's state is the step's own; this copy is changed, it says what was.
        self.state = ctx.state.model_copy(deep=True)
        self.outcome = Outcome()
        starts = ctx.gathering.starts
        self.form = Questionnaire(
            questions=questions(ctx.gathering),
            data=self.state,
            message=ctx.message,
            person=ctx.person.id,
            prefix=FLOW,
            in_chat=ctx.person.channel == Channel.MATRIX,
            reference=starts.date() if isinstance(starts, datetime) else starts,
            answering=self.status == Status.ASKED,
            on_complete=self.complete,
            send=self.outcome.send,
            context={"deadline": self.deadline},
            polls=False,
            private=lambda answers: share_of(answers) == Share.EVERYONE,
        )

    @property
    def status(self) -> str:
        return self.state.status.value if self.state.status else ""

    @property
    def deadline(self) -> datetime:
        return times.deadline(self.ctx.gathering, _config(self.ctx.gathering))

    def say(self, name: str, **context: Any) -> None:
        self.form.say(name, **context)

    def complete(self) -> None:
        """Everything answered: thank the person (first time) or confirm the change."""
        first = not self.state.finished
        self.state.finished = True
        self.state.status = Status.ANSWERED
        self.say("thanks" if first else "updated", share=share_of(self.form.answers).value)

    def finish(self) -> Outcome:
        if self.state != self.ctx.state:
            self.outcome.state = self.state
            self.outcome.status = self.status or None
        return self.outcome


def _person_step(ctx: Context) -> Outcome:
    turn = _Person(ctx)
    message = ctx.message
    if message.kind == InboundKind.COMMAND:
        handler = _EVENTS.get(message.text)
        if handler is not None:
            handler(turn)
    elif turn.status == Status.CLOSED:
        if message.kind in (InboundKind.TEXT, InboundKind.CHOICE):
            turn.say("closed")
    elif turn.status in (Status.ASKED, Status.ANSWERED):
        _converse(turn)
    return turn.finish()


def _converse(turn: _Person) -> None:
    message = turn.ctx.message
    form = turn.form
    if message.kind == InboundKind.CHOICE:
        if not form.vote():
            form.ask_next()
        return
    if message.kind == InboundKind.EDIT:
        if not form.edit():
            form.answer_text(message.text)
        return
    if message.kind == InboundKind.REDACTION:
        form.redaction()
        return
    if message.answers:
        form.take_numbered()
        return
    command = _command(message.text) if message.kind == InboundKind.TEXT else None
    if command == "help":
        turn.say("help", items=form.summary())
    elif command == "status":
        turn.say("status", items=form.summary(), share=share_of(form.answers).value)
    elif command in ("change", "edit", "add"):
        # Back to answering until the change is made: the next message is the new answer.
        turn.state.status = Status.ASKED
        form.begin_change(message.text.split(maxsplit=1)[1] if " " in message.text else "")
    elif turn.status == Status.ASKED or form.is_changing:
        form.answer_text(message.text)
    else:
        turn.say("status", items=form.summary(), share=share_of(form.answers).value)


def _on_prompt(turn: _Person) -> None:
    if turn.status:
        return  # asked already (a repeated event changes nothing)
    turn.state.status = Status.ASKED
    turn.form.answering = True
    turn.form.ask_next(first=True)


def _on_remind(turn: _Person) -> None:
    if turn.status != Status.ASKED:
        return
    turn.say("reminder", progress=dict(turn.ctx.message.payload))
    turn.form.ask_next()


def _on_close(turn: _Person) -> None:
    if turn.status in ("", Status.CLOSED):
        return
    if share_of(turn.form.answers) == Share.EVERYONE:
        # The gathering's pool holds these answers now, unlinked; only the mark stays.
        turn.state = DebriefRun(finished=turn.state.finished, anonymous=True)
    turn.state.asked = turn.state.changing = None
    turn.state.answered_by = {}
    turn.state.status = Status.CLOSED


def _on_forget(turn: _Person) -> None:
    turn.state = DebriefRun(status=Status.CLOSED)


_EVENTS: dict[str, Callable[[_Person], None]] = {
    "prompt": _on_prompt,
    "remind": _on_remind,
    "close": _on_close,
    "forget": _on_forget,
}

"""The question-asking conversation any flow uses with its own list of questions.

In a chat (Matrix) one question at a time, choice questions as polls; by email one numbered
form answered inline. Every question message carries the ids of the questions it asks, so a
vote on an older poll, or a reply to a form whose questions changed since, lands on the
question it answers. `change N` re-asks one answer; chat edits change the answer they
edited; a deleted chat message is explained, not applied; `show_if` hides what does not
apply; an answer that does not parse is asked again with the specific problem.

A flow keeps the conversation's data in its own state, whose model extends `Conversation`
(its fields are below, at the top level of the stored JSON), and decides what "done" means:
registration shows a summary to confirm, debrief thanks the person. The questionnaire never
sets a flow's status.

Templates (`<prefix>/<name>`, the prefix is the flow's): question, form, welcome,
answer_updated, redacted, which_question. They can include the shared pieces in
`templates/<lang>/forms/`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from pydantic import Field

from flows.base import FlowState, absent
from flows.common.forms import (
    AnswerValue,
    Problem,
    applicable,
    apply_numbered,
    find_question,
    parse_answer,
    parse_vote,
    pending,
    question_view,
    summary_view,
)
from flows.config import Question, QuestionType
from gateway.model import InboundKind, InboundMessage, Outgoing, OutKind, PersonId

#: How many chat messages are remembered for edits (older edits read as new text).
EDIT_MAP_LIMIT = 200


class Conversation(FlowState):
    """The questionnaire's part of a person's state; a flow's state model extends it."""

    #: Question id → normalised answer (None: skipped), see flows.common.forms.
    answers: dict[str, AnswerValue] = Field(default_factory=dict)
    #: External id of the person's chat message → the question id it answered (for edits).
    answered_by: dict[str, str] = absent(factory=dict)
    #: The question last asked in a chat (a reply answers it).
    asked: str | None = absent()
    #: The question the person asked to change ("change diet").
    changing: str | None = absent()


@dataclass
class Questionnaire:
    """One person's conversation about `questions`, for one step of a flow.

    `data` is the flow's state, whose conversation fields it changes in place; messages to
    send are appended to `send`. `answering` is whether the flow is collecting answers now
    (a free reply is then an answer, not a command).
    """

    questions: Sequence[Question]
    data: Conversation
    message: InboundMessage
    person: PersonId
    prefix: str
    in_chat: bool
    reference: date
    answering: bool
    #: Called when every applicable question is answered (the flow's "done": a summary).
    on_complete: Callable[[], None]
    send: list[Outgoing] = field(default_factory=list)
    #: Native chat polls show who voted; a flow asking anonymously turns them off.
    polls: bool = True
    #: Whether the answers given so far must not be repeated back in our messages (they are
    #: to be anonymous, and what we send is kept with the person's name).
    private: Callable[[Mapping[str, Any]], bool] = lambda answers: False
    #: A flow's own check of a parsed answer (is this town known?): a Problem refuses it
    #: and asks again. It may also change the flow's data (e.g. remember the town found).
    check: Callable[[Question, Any], Problem | None] = lambda question, value: None
    #: Extra context for every template (e.g. a deadline the flow wants to mention).
    context: Mapping[str, Any] = field(default_factory=dict)

    # -- reading -------------------------------------------------------------

    @property
    def answers(self) -> dict[str, AnswerValue]:
        return self.data.answers

    def pending(self) -> list[Question]:
        return pending(self.questions, self.answers)

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)

    def applies(self, question: Question) -> bool:
        return applicable(question, self.questions, self.answers)

    def summary(self) -> list[dict[str, Any]]:
        """The applicable questions with their answers (values left out when private)."""
        items = summary_view(self.questions, self.answers)
        if self.private(self.answers):
            return [{**item, "value": None, "hidden": True} for item in items]
        return items

    def replied_question(self) -> Question | None:
        """The question of our message this one replies to (a poll vote, a chat reply to a
        question), if it still exists and applies: it is answered, whatever was asked since."""
        asked = self.message.questions
        question = self.question(asked[0]) if len(asked) == 1 else None
        if question is None or not self.applies(question):
            return None
        return question

    def current_question(self) -> Question | None:
        """The question a free-text reply answers: the one being changed, or the one asked."""
        changing = self.changing_question()
        if changing is not None:
            return changing
        todo = self.pending()
        if self.in_chat:
            asked = next((q for q in todo if q.id == self.data.asked), None)
            return asked or (todo[0] if todo else None)
        return todo[0] if len(todo) == 1 else None

    def changing_question(self) -> Question | None:
        """The question the person asked to change, while it still exists and applies."""
        question = self.question(self.data.changing or "")
        if question is None or not self.applies(question):
            self.data.changing = None
            return None
        return question

    @property
    def is_changing(self) -> bool:
        return self.data.changing is not None

    # -- asking --------------------------------------------------------------

    def say(self, name: str, **context: Any) -> None:
        self.send.append(
            Outgoing(to=self.person, template=f"{self.prefix}/{name}", context=self._ctx(context))
        )

    def _ctx(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.context, **context}

    def ask_next(
        self,
        *,
        first: bool = False,
        problems: Mapping[str, Problem] | None = None,
        note: str = "",
    ) -> None:
        """Ask what is still open (or invalid), or hand over to `on_complete` when all is
        answered. Questions with a problem come first, so a re-prompt is never lost behind a
        new question."""
        problems = problems or {}
        changing = self.changing_question()
        if changing is not None:
            todo = [changing]
        else:
            todo = [q for q in self.questions if q.id in problems]
            todo += [q for q in self.pending() if q.id not in problems]
        if not todo:
            self.data.asked = None
            if first:
                self.say("welcome", questions=0)
            self.on_complete()
        elif self.in_chat:
            if first:
                self.say("welcome", questions=len(todo))
            self.data.asked = todo[0].id
            self.send.append(self._ask_one(todo[0], problems.get(todo[0].id)))
        else:
            self.data.asked = None
            self.send.append(self._form(todo, problems, first=first, note=note))

    def _ask_one(self, question: Question, problem: Problem | None) -> Outgoing:
        """One question in a chat: a poll for choice questions, so a tap answers it."""
        view = question_view(question, self.questions, problem)
        choice = question.type in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE)
        return Outgoing(
            to=self.person,
            template=f"{self.prefix}/question",
            context=self._ctx({"question": view, "total": len(self.questions)}),
            kind=OutKind.POLL if choice and self.polls else OutKind.TEXT,
            options=tuple(question.options) if choice and self.polls else (),
            multiple=question.type == QuestionType.MULTIPLE_CHOICE,
            questions=(question.id,),
        )

    def _form(
        self,
        asked: Sequence[Question],
        problems: Mapping[str, Problem],
        *,
        first: bool,
        note: str,
    ) -> Outgoing:
        """Several numbered questions in one message (email): the person answers under each."""
        views = [question_view(q, self.questions, problems.get(q.id)) for q in asked]
        form = Outgoing(
            to=self.person,
            template=f"{self.prefix}/form",
            context=self._ctx({"questions": views, "first": first, "note": note}),
        )
        # The form's numbering (positions in the question list), for reading the reply.
        return replace(form, questions=tuple(q.id for q in self.questions))

    # -- answering -----------------------------------------------------------

    def record(self, question: Question, value: AnswerValue) -> None:
        self.answers[question.id] = value
        if self.data.changing == question.id:
            self.data.changing = None
        if self.message.kind in (InboundKind.TEXT, InboundKind.EDIT):
            mapping = self.data.answered_by
            mapping[self.message.replaces or self.message.external_id] = question.id
            for old in list(mapping)[:-EDIT_MAP_LIMIT]:
                del mapping[old]

    def answer_text(self, text: str, *, restart: bool = False) -> None:
        """A free reply: the answer to the question it replies to, or the one asked.

        `restart` (the person said "start"/"hello" again) asks again instead.
        """
        current = self.replied_question() or self.current_question()
        if current is None or restart:
            self.ask_next(note="" if current else "no_answers")
            return
        parsed = parse_answer(current, text, reference=self.reference)
        problem = parsed.problem or self.check(current, parsed.value)
        if problem is not None:
            self.data.asked = current.id
            self.ask_next(problems={current.id: problem})
            return
        self.record(current, parsed.value)
        self.ask_next()

    def take_numbered(self) -> None:
        """An email reply with answers under the numbered questions of the form it replies to."""
        before = dict(self.answers)
        asked = self.pending()
        answers, problems = apply_numbered(
            self.questions,
            before,
            self.message.answers,
            reference=self.reference,
            numbering=self.message.questions,
        )
        # An optional question of the form left blank is a "skip": asking again would nag.
        for question in asked:
            if not question.required and question.id not in answers and question.id not in problems:
                answers[question.id] = None
        for question in self.questions:
            changed = question.id in answers and answers[question.id] != before.get(
                question.id, object()
            )
            problem = self.check(question, answers[question.id]) if changed else None
            if problem is not None:
                problems[question.id] = problem
                if question.id in before:
                    answers[question.id] = before[question.id]
                else:
                    del answers[question.id]
        self.data.answers = answers
        changing = self.data.changing
        if (
            changing in answers
            and changing not in problems
            and answers[changing] != before.get(changing, object())
        ):
            self.data.changing = None
        self.ask_next(problems=problems)

    def begin_change(self, argument: str) -> None:
        """ "change 3" / "change diet": ask that question again."""
        question = find_question(self.questions, self.answers, argument) if argument else None
        if question is None:
            self.say("which_question", argument=argument, items=self.summary())
            return
        self.data.changing = question.id
        self.data.asked = question.id
        self.ask_next(note="change")

    def vote(self, *, settled: bool = False) -> bool:
        """A poll vote answers its poll's question (an older poll too). False when the vote
        answers nothing (the flow reads the choice as a word, e.g. a ✅ reaction as "yes").

        `settled`: the flow no longer takes answers to old polls (e.g. a cancelled run)."""
        choice = self.message.choice or ""
        replied = None if settled else self.replied_question()
        current = replied or (
            self.current_question() if self.answering or self.is_changing else None
        )
        if current is None:
            return False
        parsed = parse_vote(current, choice)
        problem = parsed.problem or self.check(current, parsed.value)
        if problem is not None:
            self.ask_next(problems={current.id: problem})
            return True
        self.record(current, parsed.value)
        if replied is not None and self._still_asking_another(replied):
            # A second thought on an earlier poll: confirm it; the open question is still there.
            self.say("answer_updated", question=question_view(replied, self.questions))
            return True
        self.ask_next()
        return True

    def _still_asking_another(self, answered: Question) -> bool:
        """Whether, in a chat, a question other than `answered` is asked and still open."""
        asked = self.data.asked
        open_ids = {q.id for q in self.pending()}
        return self.answering and asked != answered.id and asked in open_ids

    def edit(self) -> bool:
        """A chat edit of an earlier answer changes that answer. False when the edited
        message was no answer (the flow reads it as new text)."""
        question = self._edited_question()
        if question is None or not self.applies(question):
            return False
        parsed = parse_answer(question, self.message.text, reference=self.reference)
        problem = parsed.problem or self.check(question, parsed.value)
        if problem is not None:
            self.data.changing = question.id
            self.ask_next(problems={question.id: problem})
            return True
        self.record(question, parsed.value)
        if self.answering:
            self.say("answer_updated", question=question_view(question, self.questions))
        self.ask_next()
        return True

    def redaction(self) -> bool:
        """Deleting a chat message does not delete the answer: tell the person how to change
        it. False when the deleted message was no answer."""
        question = self._edited_question()
        if question is None:
            return False
        self.say("redacted", question=question_view(question, self.questions))
        return True

    def _edited_question(self) -> Question | None:
        question_id = self.data.answered_by.get(self.message.replaces or "")
        return self.question(question_id) if question_id else None

"""Questions and answers: parsing, validation, `show_if`, and what to ask next. Pure functions.

Registration, travel and debrief all ask typed questions from the gathering file. This module
knows how people actually answer ("Ja", "2", "vegan and gluten-free", "14 juillet", "1,5")
and turns that into a normalised, JSON-friendly value, or into a `Problem` that a template
turns into a specific re-prompt. Nothing here produces user-visible text: a `Problem` is a
code plus parameters, rendered by `templates/<lang>/forms/problem.txt.j2`.

Answers live in a mapping question id → value (never by position), so an organiser can
reorder, add or remove questions while people are answering. `None` means "skipped" (an
optional question the person chose not to answer); a missing key means "not asked yet".

`flows.common.words` holds the vocabulary (yes/no/skip/help words, month names) and `fold`.

Normalised values: text/city/email → str, single choice → the option text, multiple choice →
list of option texts in the option order, yes/no → bool, number → int (or float when it has a
fraction), date → ISO "YYYY-MM-DD", time → "HH:MM".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flows.common.words import (
    fold,
    is_greeting,
    is_no,
    is_skip,
    is_yes,
    parse_date,
    parse_time,
)
from flows.config import Question, QuestionType, ShowIf

AnswerValue = str | int | float | bool | list[str] | None
Answers = Mapping[str, AnswerValue]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why an answer was not accepted; `code` picks the sentence in the problem template."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Parsed:
    """The result of reading one answer: a value, or the problem with it."""

    value: AnswerValue = None
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;.]{2,}$")
_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_LIST_SPLIT = re.compile(r"\s*(?:[,;/&+\n]|\band\b|\bund\b|\bet\b|\by\b|\be\b|\ben\b)\s*")


#: Types whose any text would be accepted as an answer, so a greeting must be told apart.
FREE_TEXT = frozenset({QuestionType.TEXT, QuestionType.CITY})


def parse_answer(question: Question, text: str, *, reference: date) -> Parsed:
    """Read a typed answer. `reference` is the date a year-less date is placed near."""
    raw = text.strip()
    if not raw:
        return Parsed(problem=Problem("empty"))
    if len(raw) > question.answer_limit:
        return Parsed(problem=Problem("too_long", {"limit": question.answer_limit}))
    if question.type in FREE_TEXT and is_greeting(raw):
        # "thanks!" to the welcome message is not the person's name: ask the question again.
        return Parsed(problem=Problem("greeting"))
    if is_skip(raw):
        if question.required:
            return Parsed(problem=Problem("required"))
        return Parsed(None)
    return _PARSERS[question.type](question, raw, reference)


def parse_vote(question: Question, choice: str) -> Parsed:
    """Read a structured answer: a poll vote ("2", "1,3", 1-based) or a reaction ("yes"/"no")."""
    if question.type == QuestionType.YES_NO:
        return _yes_no(question, choice, date.min)
    if question.type in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE):
        numbers = [p for p in re.split(r"[,\s]+", choice.strip()) if p]
        if numbers and all(n.isdigit() and 1 <= int(n) <= len(question.options) for n in numbers):
            if question.type == QuestionType.SINGLE_CHOICE and len(numbers) == 1:
                return Parsed(question.options[int(numbers[0]) - 1])
            if question.type == QuestionType.MULTIPLE_CHOICE:
                picked = {int(n) - 1 for n in numbers}
                return Parsed([o for i, o in enumerate(question.options) if i in picked])
    return Parsed(problem=Problem("vote"))


def _text(question: Question, raw: str, reference: date) -> Parsed:
    return Parsed(raw)


def _city(question: Question, raw: str, reference: date) -> Parsed:
    if not any(c.isalpha() for c in raw):
        return Parsed(problem=Problem("city"))
    return Parsed(" ".join(raw.split()))


def _email(question: Question, raw: str, reference: date) -> Parsed:
    candidate = raw.removeprefix("mailto:").strip("<> ")
    if not _EMAIL.match(candidate):
        return Parsed(problem=Problem("email"))
    local, _, domain = candidate.rpartition("@")
    return Parsed(f"{local}@{domain.lower()}")


def _yes_no(question: Question, raw: str, reference: date) -> Parsed:
    if is_yes(raw):
        return Parsed(True)
    if is_no(raw):
        return Parsed(False)
    return Parsed(problem=Problem("yes_no"))


def _number(question: Question, raw: str, reference: date) -> Parsed:
    low, high = question.bounds
    bounds = {"min": _plain(low), "max": _plain(high)}
    token = raw.split()[0] if raw.split() else raw
    if question.type == QuestionType.SCALE:
        token = token.split("/")[0]  # "4/5"
    if not _NUMBER.match(token):
        return Parsed(problem=Problem("number", bounds))
    value = float(token.replace(",", "."))
    whole = question.type != QuestionType.SCALE or value.is_integer()
    if not whole or (low is not None and value < low) or (high is not None and value > high):
        return Parsed(problem=Problem("number", bounds))
    return Parsed(_plain(value))


def _plain(value: float | None) -> int | float | None:
    """1.0 → 1, so "between 1 and 4" reads naturally and whole numbers stay integers."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _date(question: Question, raw: str, reference: date) -> Parsed:
    found = parse_date(raw, reference)
    if found is None:
        return Parsed(problem=Problem("date", {"example": reference.isoformat()}))
    return Parsed(found.isoformat())


def _time(question: Question, raw: str, reference: date) -> Parsed:
    found = parse_time(raw)
    return Parsed(found) if found else Parsed(problem=Problem("time"))


def _single(question: Question, raw: str, reference: date) -> Parsed:
    index = match_option(question.options, raw)
    if isinstance(index, int):
        return Parsed(question.options[index])
    return Parsed(problem=_choice_problem(question, raw, index))


def _multiple(question: Question, raw: str, reference: date) -> Parsed:
    whole = match_option(question.options, raw)
    if isinstance(whole, int):
        return Parsed([question.options[whole]])
    parts = [p for p in _LIST_SPLIT.split(raw) if p and p.strip()]
    if len(parts) == 1 and re.fullmatch(r"[\d\s]+", raw):
        parts = raw.split()
    picked: set[int] = set()
    for part in parts:
        index = match_option(question.options, part)
        if not isinstance(index, int):
            return Parsed(problem=_choice_problem(question, part, index))
        picked.add(index)
    return Parsed([o for i, o in enumerate(question.options) if i in picked])


def _choice_problem(question: Question, raw: str, candidates: list[int]) -> Problem:
    if candidates:
        matches = [question.options[i] for i in candidates]
        return Problem("ambiguous", {"answer": raw, "matches": matches})
    return Problem(
        "choice",
        {
            "count": len(question.options),
            "options": list(question.options),
            "multiple": question.type == QuestionType.MULTIPLE_CHOICE,
        },
    )


def match_option(options: Sequence[str], raw: str) -> int | list[int]:
    """The index of the option `raw` names (by number, text, or unambiguous prefix).

    Returns the candidate indexes instead when the answer is ambiguous ([] when none match).
    """
    answer = fold(raw).strip(" .!)")
    if answer.isdigit():
        number = int(answer)
        return number - 1 if 1 <= number <= len(options) else []
    folded = [fold(o) for o in options]
    if answer in folded:
        return folded.index(answer)
    if not answer:
        return []
    prefixed = [i for i, o in enumerate(folded) if o.startswith(answer)]
    if len(prefixed) == 1:
        return prefixed[0]
    return prefixed


_PARSERS: dict[QuestionType, Callable[[Question, str, date], Parsed]] = {
    QuestionType.TEXT: _text,
    QuestionType.CITY: _city,
    QuestionType.EMAIL: _email,
    QuestionType.YES_NO: _yes_no,
    QuestionType.NUMBER: _number,
    QuestionType.SCALE: _number,
    QuestionType.DATE: _date,
    QuestionType.TIME: _time,
    QuestionType.SINGLE_CHOICE: _single,
    QuestionType.MULTIPLE_CHOICE: _multiple,
}


def condition_holds(condition: ShowIf, answers: Answers) -> bool:
    """Whether an earlier answer satisfies a `show_if` (unanswered: not yet)."""
    if condition.question not in answers:
        return False
    value = answers[condition.question]
    if condition.answered is not None:
        return (value is not None) == condition.answered
    given = value if isinstance(value, list) else [value]
    if condition.equals is not None:
        return any(_same(v, condition.equals) for v in given)
    if condition.any_of is not None:
        return any(_same(v, wanted) for v in given for wanted in condition.any_of)
    return value is not None


def _same(value: AnswerValue, wanted: str | int | bool) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        if isinstance(wanted, str):
            return value is (True if is_yes(wanted) else False if is_no(wanted) else None)
        return value is wanted
    if isinstance(value, (int, float)) and not isinstance(wanted, str):
        return value == wanted
    return value is not None and fold(str(value)) == fold(str(wanted))


def applicable(question: Question, questions: Sequence[Question], answers: Answers) -> bool:
    """Whether a question is asked, following chains (A shows B which shows C)."""
    condition = question.show_if
    if condition is None:
        return True
    parent = next((q for q in questions if q.id == condition.question), None)
    if parent is None or not applicable(parent, questions, answers):
        return False
    return condition_holds(condition, answers)


def pending(questions: Sequence[Question], answers: Answers) -> list[Question]:
    """Questions that apply now and have no answer yet, in the gathering file's order."""
    return [q for q in questions if q.id not in answers and applicable(q, questions, answers)]


def relevant_answers(questions: Sequence[Question], answers: Answers) -> dict[str, AnswerValue]:
    """The answers that count: of questions that still exist and still apply.

    Answers of removed or no-longer-applicable questions stay in the state (an organiser may
    restore the question), they are just not shown or exported.
    """
    return {
        q.id: answers[q.id]
        for q in questions
        if q.id in answers and applicable(q, questions, answers)
    }


def number_of(questions: Sequence[Question], question_id: str) -> int:
    """The 1-based position of a question in the gathering file (email forms, "change 3")."""
    return next(i for i, q in enumerate(questions, start=1) if q.id == question_id)


def find_question(questions: Sequence[Question], answers: Answers, ref: str) -> Question | None:
    """The applicable question a person means by "3", "diet" (its id) or a word of its prompt."""
    wanted = fold(ref).strip(" .!?#")
    shown = [q for q in questions if applicable(q, questions, answers)]
    if wanted.isdigit():
        index = int(wanted) - 1
        found = questions[index] if 0 <= index < len(questions) else None
        return found if found in shown else None
    by_id = [q for q in shown if q.id == wanted.replace(" ", "_")]
    if by_id:
        return by_id[0]
    by_prefix = [q for q in shown if q.id.startswith(wanted.replace(" ", "_"))]
    if len(by_prefix) == 1:
        return by_prefix[0]
    by_prompt = [q for q in shown if wanted and wanted in fold(q.prompt)]
    return by_prompt[0] if len(by_prompt) == 1 else None


def apply_numbered(
    questions: Sequence[Question],
    answers: Answers,
    numbered: Mapping[int, str],
    *,
    reference: date,
    numbering: Sequence[str] = (),
) -> tuple[dict[str, AnswerValue], dict[str, Problem]]:
    """Apply email answers given under numbered questions; return new answers and problems.

    `numbering` is the form the person answered (question ids by number, as sent); without
    it, today's order of `questions`. Questions added, moved or removed since the form was
    sent therefore never shift an answer onto another question: a number whose question is
    gone is ignored. Answers are applied in question order so a `show_if` that depends on an
    answer in the same reply is evaluated against it. Numbers of questions that do not apply
    are ignored.
    """
    by_id = {q.id: q for q in questions}
    ids = list(numbering) or [q.id for q in questions]
    updated = dict(answers)
    problems: dict[str, Problem] = {}
    for number in sorted(numbered):
        if not 1 <= number <= len(ids) or ids[number - 1] not in by_id:
            continue
        question = by_id[ids[number - 1]]
        if not applicable(question, questions, updated):
            continue
        parsed = parse_answer(question, numbered[number], reference=reference)
        if parsed.ok:
            updated[question.id] = parsed.value
        else:
            assert parsed.problem is not None
            problems[question.id] = parsed.problem
    return updated, problems


def question_view(
    question: Question, questions: Sequence[Question], problem: Problem | None = None
) -> dict[str, Any]:
    """What a template needs to ask one question."""
    return {
        "id": question.id,
        "number": number_of(questions, question.id),
        "prompt": question.prompt,
        "help": question.help,
        "type": question.type.value,
        "options": list(question.options),
        "required": question.required,
        "min": _plain(question.bounds[0]),
        "max": _plain(question.bounds[1]),
        "problem": _problem_view(problem),
    }


def _problem_view(problem: Problem | None) -> dict[str, Any] | None:
    return None if problem is None else {"code": problem.code, **problem.params}


def summary_view(questions: Sequence[Question], answers: Answers) -> list[dict[str, Any]]:
    """Each applicable question with its number and answer, for summaries and exports.

    `value` is a string for text-like answers, a list for multiple choice, a bool for yes/no,
    None when skipped; templates decide how to word them.
    """
    return [
        {
            "id": q.id,
            "number": i,
            "prompt": q.prompt,
            "type": q.type.value,
            "value": answers.get(q.id),
            "answered": q.id in answers,
        }
        for i, q in enumerate(questions, start=1)
        if applicable(q, questions, answers)
    ]

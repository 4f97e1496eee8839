"""Table-driven tests of the question/answer machinery in flows/common/forms.py."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from flows.common.forms import (
    applicable,
    apply_numbered,
    find_question,
    match_option,
    parse_answer,
    parse_vote,
    pending,
    relevant_answers,
    summary_view,
)
from flows.common.words import is_help
from flows.config import Question, QuestionType, ShowIf

REF = date(2027, 7, 10)


def q(type_: str, **kw: Any) -> Question:
    return Question(id=kw.pop("id", "q"), type=QuestionType(type_), prompt="?", **kw)


DIET = q("single_choice", id="diet", options=["vegan", "vegetarian", "omnivore"])
NEEDS = q(
    "multiple_choice", id="needs", options=["vegan", "gluten-free", "nut allergy", "Café au lait"]
)
NIGHTS = q("number", id="nights", min=1, max=4)
PRICE = q("number", id="price", min=0)
TENT = q("yes_no", id="tent")
ARRIVAL = q("date", id="arrival")
MAIL = q("email", id="mail")
CITY = q("city", id="city")
TEXT = q("text", id="about")
OPTIONAL = q("text", id="notes", required=False)

VALID = [
    (DIET, "2", "vegetarian"),
    (DIET, "Vegan", "vegan"),
    (DIET, "OMNI", "omnivore"),
    (DIET, "vegeta", "vegetarian"),
    (DIET, " 3. ", "omnivore"),
    (NEEDS, "1, 3", ["vegan", "nut allergy"]),
    (NEEDS, "vegan and gluten-free", ["vegan", "gluten-free"]),
    (NEEDS, "2 4", ["gluten-free", "Café au lait"]),
    (NEEDS, "cafe au lait", ["Café au lait"]),
    (NEEDS, "nut allergy; vegan", ["vegan", "nut allergy"]),
    (NEEDS, "glúten", ["gluten-free"]),
    (NIGHTS, "3", 3),
    (NIGHTS, "2,5", 2.5),
    (NIGHTS, "4 nights", 4),
    (PRICE, "12.50", 12.5),
    (TENT, "yes", True),
    (TENT, "Y", True),
    (TENT, "Ja!", True),
    (TENT, "oui", True),
    (TENT, "Sí", True),
    (TENT, "sim", True),
    (TENT, "✅", True),
    (TENT, "Yes, I'll bring one", True),
    (TENT, "nee", False),
    (TENT, "Nein", False),
    (TENT, "não", False),
    (TENT, "non", False),
    (ARRIVAL, "2027-07-14", "2027-07-14"),
    (ARRIVAL, "14 July", "2027-07-14"),
    (ARRIVAL, "July 14, 2027", "2027-07-14"),
    (ARRIVAL, "14.07.2027", "2027-07-14"),
    (ARRIVAL, "14/7", "2027-07-14"),
    (ARRIVAL, "7/14/2027", "2027-07-14"),
    (ARRIVAL, "14. Juli", "2027-07-14"),
    (ARRIVAL, "14 juillet 2027", "2027-07-14"),
    (ARRIVAL, "14 de julio de 2027", "2027-07-14"),
    (ARRIVAL, "3 Jan", "2028-01-03"),
    (MAIL, "Ana@Example.ORG", "Ana@example.org"),
    (MAIL, "<bo@x.net>", "bo@x.net"),
    (CITY, "  São   Paulo ", "São Paulo"),
    (TEXT, "I juggle", "I juggle"),
    (OPTIONAL, "skip", None),
]


@pytest.mark.parametrize(("question", "answer", "expected"), VALID)
def test_valid_answers_are_normalised(question: Question, answer: str, expected: Any) -> None:
    parsed = parse_answer(question, answer, reference=REF)
    assert parsed.problem is None
    assert parsed.value == expected
    assert type(parsed.value) is type(expected)


INVALID = [
    (DIET, "5", "choice", {"count": 3, "options": ["vegan", "vegetarian", "omnivore"]}),
    (DIET, "pizza", "choice", {"count": 3}),
    (DIET, "veg", "ambiguous", {"matches": ["vegan", "vegetarian"]}),
    (NEEDS, "vegan and pizza", "choice", {"count": 4}),
    (NIGHTS, "five", "number", {"min": 1, "max": 4}),
    (NIGHTS, "7", "number", {"min": 1, "max": 4}),
    (NIGHTS, "0,5", "number", {"min": 1, "max": 4}),
    (PRICE, "-1", "number", {"min": 0, "max": None}),
    (TENT, "maybe", "yes_no", {}),
    (ARRIVAL, "next week", "date", {"example": "2027-07-10"}),
    (ARRIVAL, "31.02.2027", "date", {}),
    (MAIL, "ana at example", "email", {}),
    (CITY, "12345", "city", {}),
    (TEXT, "   ", "empty", {}),
    (TEXT, "skip", "required", {}),
]


@pytest.mark.parametrize(("question", "answer", "code", "params"), INVALID)
def test_invalid_answers_get_a_specific_problem(
    question: Question, answer: str, code: str, params: dict[str, Any]
) -> None:
    parsed = parse_answer(question, answer, reference=REF)
    assert parsed.problem is not None
    assert parsed.problem.code == code
    for key, value in params.items():
        assert parsed.problem.params[key] == value


@pytest.mark.parametrize(
    ("question", "choice", "expected"),
    [
        (DIET, "2", "vegetarian"),
        (NEEDS, "1,3", ["vegan", "nut allergy"]),
        (NEEDS, "3,1", ["vegan", "nut allergy"]),
        (TENT, "yes", True),
        (TENT, "no", False),
    ],
)
def test_votes_and_reactions(question: Question, choice: str, expected: Any) -> None:
    assert parse_vote(question, choice).value == expected


@pytest.mark.parametrize(("question", "choice"), [(DIET, "4"), (DIET, "1,2"), (NIGHTS, "1")])
def test_votes_that_do_not_fit_are_problems(question: Question, choice: str) -> None:
    assert parse_vote(question, choice).problem is not None


def test_match_option_reports_candidates_when_ambiguous() -> None:
    assert match_option(["vegan", "vegetarian"], "veg") == [0, 1]
    assert match_option(["vegan", "vegetarian"], "x") == []
    assert match_option(["a", "b"], "3") == []


BASE = [
    q("yes_no", id="car"),
    q("number", id="seats", min=1, max=8, show_if=ShowIf(question="car", equals=True)),
    q("single_choice", id="diet", options=["vegan", "omnivore"]),
    q("text", id="allergy", show_if=ShowIf(question="diet", any_of=["Vegan"])),
    q("text", id="seat_notes", required=False, show_if=ShowIf(question="seats", answered=True)),
]


@pytest.mark.parametrize(
    ("answers", "expected_pending"),
    [
        ({}, ["car", "diet"]),
        ({"car": True}, ["seats", "diet"]),
        ({"car": False}, ["diet"]),
        ({"car": True, "seats": 3}, ["diet", "seat_notes"]),
        ({"car": False, "seats": 3}, ["diet"]),
        ({"car": False, "diet": "vegan"}, ["allergy"]),
        ({"car": False, "diet": "omnivore"}, []),
    ],
)
def test_show_if_decides_what_is_pending(
    answers: dict[str, Any], expected_pending: list[str]
) -> None:
    assert [x.id for x in pending(BASE, answers)] == expected_pending


def test_show_if_equals_accepts_words_for_yes_no() -> None:
    cond = q("text", id="why", show_if=ShowIf(question="car", equals="yes"))
    assert applicable(cond, [BASE[0], cond], {"car": True})
    assert not applicable(cond, [BASE[0], cond], {"car": False})


def test_relevant_answers_ignore_removed_and_inapplicable_questions() -> None:
    answers = {"car": False, "seats": 3, "diet": "omnivore", "gone": "kept"}
    assert relevant_answers(BASE, answers) == {"car": False, "diet": "omnivore"}


def test_apply_numbered_uses_positions_and_evaluates_show_if_in_order() -> None:
    answers, problems = apply_numbered(BASE, {}, {1: "yes", 2: "12", 3: "2"}, reference=REF)
    assert answers == {"car": True, "diet": "omnivore"}
    assert set(problems) == {"seats"}
    assert problems["seats"].code == "number"


def test_apply_numbered_ignores_questions_that_do_not_apply() -> None:
    answers, problems = apply_numbered(BASE, {}, {1: "no", 2: "3", 9: "x"}, reference=REF)
    assert answers == {"car": False}
    assert problems == {}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("3", "diet"),
        ("diet", "diet"),
        ("Diet", "diet"),
        ("#1", "car"),
        ("9", None),
        ("2", None),
        ("sea", None),
        ("nothing", None),
    ],
)
def test_find_question(ref: str, expected: str | None) -> None:
    found = find_question(BASE, {"car": False}, ref)
    assert (found.id if found else None) == expected


def test_summary_numbers_follow_the_gathering_file() -> None:
    view = summary_view(BASE, {"car": False, "diet": "vegan"})
    assert [(v["number"], v["id"]) for v in view] == [(1, "car"), (3, "diet"), (4, "allergy")]
    assert view[2]["answered"] is False


@pytest.mark.parametrize(
    ("text", "expected"), [("?", True), ("Help", True), ("hilfe", True), ("help me with 3", False)]
)
def test_help_words(text: str, expected: bool) -> None:
    assert is_help(text) is expected

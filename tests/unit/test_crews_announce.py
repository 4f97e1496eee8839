"""How crewmates see each other in a crew introduction."""

from __future__ import annotations

from datetime import date

import pytest

from flows.base import RunView
from flows.config import GatheringConfig, Question, QuestionType, RegistrationConfig
from flows.crews.announce import member_card
from gateway.model import PersonId


def camp(questions: list[Question], name_question: str | None = None) -> GatheringConfig:
    return GatheringConfig(
        slug="camp",
        name="Camp",
        starts=date(2027, 7, 1),
        ends=date(2027, 7, 5),
        capacity=10,
        registration=RegistrationConfig(questions=questions, name_question=name_question),
    )


NAME = Question(id="name", type=QuestionType.TEXT, prompt="What should we call you?")
BADGE = Question(id="badge", type=QuestionType.TEXT, prompt="Badge?")


@pytest.mark.parametrize(
    ("questions", "name_question", "answers", "shown"),
    [
        ([NAME], None, {"name": "Ana"}, "Ana"),  # the chosen name, not the From header's
        ([BADGE], "badge", {"badge": "Nana"}, "Nana"),
        ([NAME], None, {}, "Ana Lima (Work)"),  # not answered yet: the display name
        ([BADGE], None, {"badge": "Nana"}, "Ana Lima (Work)"),  # no name question
    ],
)
def test_introductions_use_the_name_the_person_chose(
    questions: list[Question], name_question: str | None, answers: dict[str, str], shown: str
) -> None:
    run = RunView(PersonId(3), "registered", {"answers": answers}, "Ana Lima (Work)")
    assert member_card(camp(questions, name_question), PersonId(3), run)["name"] == shown


def test_a_name_question_that_does_not_exist_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="name_question 'nick'"):
        camp([NAME], "nick")

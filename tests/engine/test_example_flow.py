"""The smallest real flow on the platform: what a new flow needs before its own logic.

`Lunch` asks two questions through the shared questionnaire (one at a time in a chat, one
numbered form by email, re-prompts, "change N", edits) when the organisers send it the
`ask` command, and thanks the person. Routing, the outbox, templates per channel, the
command path, erasure and restarts are the platform's. The lines between the markers are
what a flow author writes, plus one-line templates.
"""

from __future__ import annotations

import inspect
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import ClassVar, Literal

from flows.base import FlowState, Outcome, StepContext
from flows.common.questionnaire import Conversation, Questionnaire
from flows.config import Question, QuestionType
from gateway.core.people import create_person
from gateway.core.render import Renderer
from gateway.model import Channel, Emit, Identity, InboundKind, InboundMessage, PersonId
from gateway.ops.commands import send_command
from tests.kit.engine import Clock, Harness, gathering

# --- the flow a developer writes ---
QUESTIONS = [
    Question(id="soup", type=QuestionType.YES_NO, prompt="Soup for lunch?"),
    Question(id="guests", type=QuestionType.NUMBER, prompt="How many guests?", min=0, max=3),
]


class LunchState(Conversation):  # the answers, and where the person is
    status: Literal["asking", "done"] | None = None


class Lunch:
    name: ClassVar[str] = "lunch"
    reads: ClassVar[tuple[str, ...]] = ()
    state_model: ClassVar[type[LunchState]] = LunchState
    shared_model: ClassVar[type[FlowState]] = FlowState  # nothing shared

    def wants(self, message: InboundMessage, status: str) -> bool:
        return status == "asking"

    def step(self, ctx: StepContext[LunchState, FlowState]) -> Outcome:
        if ctx.is_gathering_run:  # the organisers' "ask": everyone they name
            people = ctx.message.payload.get("people", [])
            return Outcome(emit=[Emit("lunch", PersonId(p), "ask") for p in people])
        state, outcome = ctx.state, Outcome()
        form = Questionnaire(
            questions=QUESTIONS,
            data=state,
            message=ctx.message,
            person=ctx.person.id,
            prefix="lunch",
            in_chat=ctx.person.channel == Channel.MATRIX,
            reference=date(2027, 7, 1),
            answering=True,
            on_complete=lambda: form.say("thanks"),
            send=outcome.send,
        )
        if ctx.message.kind == InboundKind.COMMAND:
            form.ask_next(first=True)
        elif ctx.message.answers:
            form.take_numbered()
        else:
            form.answer_text(ctx.message.text)
        state.status = "asking" if form.pending() else "done"
        return Outcome(state=state, status=state.status, send=outcome.send)


# --- end of the flow ---

TEMPLATES = {
    "welcome": "Hello! Two questions about lunch.",
    "question": "{{ question.prompt }}",
    "form": "{% for q in questions %}{{ q.number }}. {{ q.prompt }}\n{% endfor %}",
    "thanks": "Thank you, see you at lunch.",
}
ANA = Identity.email("ana@example.org", "Ana")
BO = Identity.matrix("@bo:example.org", "Bo")


def test_the_example_flow_is_short() -> None:
    source = inspect.getsource(sys.modules[__name__])
    flow = source.split("# --- the flow a developer writes ---")[1].split("# --- end")[0]
    code = [line for line in flow.splitlines() if line.strip() and not line.strip().startswith("#")]
    print(f"\nlines a new flow needs: {len(code)}, plus {len(TEMPLATES)} one-line templates")
    assert len(code) <= 45


async def test_the_example_flow_runs_on_both_channels(tmp_path: Path) -> None:
    root = tmp_path / "templates" / "en" / "lunch"
    root.mkdir(parents=True)
    for name, text in TEMPLATES.items():
        (root / f"{name}.txt.j2").write_text(text)
    gw = await Harness.open(
        tmp_path, {"lunch": Lunch()}, {"camp": gathering()}, Clock(datetime(2027, 6, 1, tzinfo=UTC))
    )
    gw.engine.enqueuer.renderer = Renderer(tmp_path / "templates")
    try:
        async with gw.store.transaction() as tx:
            people = [await create_person(tx, who, language="en") for who in (ANA, BO)]
        await send_command(gw.engine, "camp", "lunch", "ask", {"people": people})
        sent = await gw.deliver()
        [form] = [i for i in sent if i.address == ANA.address]
        assert "1. Soup for lunch?\n2. How many guests?" in form.body.text
        assert (await gw.say(ANA, "", answers={1: "yes", 2: "2"}))[-1].body.text.startswith("Thank")
        assert (await gw.say(BO, "maybe"))[-1].body.text == "Soup for lunch?"  # asked again
        await gw.say(BO, "no")
        assert (await gw.say(BO, "7"))[-1].body.text == "How many guests?"  # over max: again
        assert (await gw.say(BO, "1"))[-1].body.text == "Thank you, see you at lunch."
        assert [(await gw.run(p, "lunch"))[0] for p in people] == ["done", "done"]
    finally:
        await gw.close()

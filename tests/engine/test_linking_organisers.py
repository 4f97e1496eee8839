"""The linking and organisers flows as pure steps, and command routing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.base import Flow, FlowState, PersonInfo, RunView, StepContext
from flows.linking import Linking
from flows.organisers import Organisers
from gateway.core.command_routing import command_target
from gateway.model import (
    GATHERING_SUBJECT,
    Channel,
    Identity,
    InboundKind,
    InboundMessage,
    PersonId,
    Target,
)
from tests.kit.engine import gathering
from tests.kit.states import context, stored

NOW = datetime(2027, 1, 20, 9, 0, tzinfo=UTC)
LINKING, ORGANISERS = Linking(), Organisers()
MAYA = PersonInfo(PersonId(7), "Maya", "en", Channel.MATRIX, (Channel.MATRIX,))


def msg(text: str, kind: InboundKind = InboundKind.TEXT, **extra: Any) -> InboundMessage:
    return InboundMessage(
        Channel.MATRIX, f"${text}", kind, NOW, Identity.matrix("@maya:hs"), text=text, **extra
    )


def ctx(
    message: InboundMessage,
    state: Mapping[str, Any] | FlowState | None = None,
    *,
    shared: Mapping[str, Any] | FlowState | None = None,
    now: datetime = NOW,
    person: PersonInfo = MAYA,
    peers: Any = None,
    flow: Flow = LINKING,
) -> StepContext[Any, Any]:
    return context(
        flow,
        message=message,
        now=now,
        gathering=gathering(),
        person=person,
        state=state or {},
        shared=shared or {},
        peers=peers or {},
    )


def test_link_email_sends_a_code_to_the_address_and_the_code_links_it() -> None:
    flow = Linking()
    out = flow.step(ctx(msg("link email Maya@Example.org")))
    code_msg, note = out.send
    assert code_msg.channel == Channel.EMAIL and code_msg.address == "maya@example.org"
    code = code_msg.context["code"]
    assert len(code) == 6 and code.isdigit()
    assert note.template == "linking/code_sent" and out.status == "pending"
    assert flow.wants(msg(f"it is {code}"), "pending")
    done = flow.step(ctx(msg(code), out.state))
    assert done.link == [Identity.email("maya@example.org")] and done.status == "linked"


def test_link_matrix_from_email_dms_the_mxid() -> None:
    person = PersonInfo(PersonId(8), "Ana", "en", Channel.EMAIL, (Channel.EMAIL,))
    out = Linking().step(ctx(msg("link matrix @ana:hs"), person=person))
    assert out.send[0].channel == Channel.MATRIX and out.send[0].address == "@ana:hs"
    assert out.send[0].context["via"] == "email"


def test_wrong_codes_expiry_and_usage() -> None:
    flow = Linking()
    state = flow.step(ctx(msg("link email a@b.org"))).state
    assert state is not None
    wrong = "000000" if stored(state)["pending"]["code"] != "000000" else "111111"
    for tries in range(1, 5):
        out = flow.step(ctx(msg(wrong), state))
        assert out.send[0].template == "linking/wrong_code" and not out.link
        state = out.state
        assert stored(state)["pending"]["tries"] == tries
    assert flow.step(ctx(msg(wrong), state)).send[0].template == "linking/too_many"
    fresh = stored(flow.step(ctx(msg("link email a@b.org"))).state)
    assert fresh is not None
    late = flow.step(ctx(msg(fresh["pending"]["code"]), fresh, now=NOW + timedelta(hours=2)))
    assert late.send[0].template == "linking/expired" and not late.link
    assert flow.step(ctx(msg("link fax 123"))).send[0].template == "linking/usage"


def test_a_second_link_keeps_the_first_through_wrong_codes_and_expiry() -> None:
    flow = Linking()
    first = flow.step(ctx(msg("link email a@b.org")))
    linked = flow.step(ctx(msg(first.send[0].context["code"]), first.state)).state
    again = flow.step(ctx(msg("link matrix @maya:other"), linked)).state
    code = stored(again)["pending"]["code"]
    wrong = flow.step(ctx(msg("000000" if code != "000000" else "111111"), again)).state
    late = flow.step(ctx(msg(code), wrong, now=NOW + timedelta(hours=2)))
    assert late.status == "expired"
    assert stored(late.state) == {"linked": [{"kind": "email", "address": "a@b.org"}]}


def test_command_routing_prefers_linking_over_a_busy_registration() -> None:
    flows: Any = {"registration": object(), "linking": Linking()}
    gatherings = {"camp": gathering()}
    live = [("camp", "registration", "in_progress")]
    assert command_target(
        msg("link email a@b.org"), PersonId(7), gatherings, flows, live
    ) == Target("camp", "linking", PersonId(7))
    assert command_target(msg("vegetarian"), PersonId(7), gatherings, flows, live) is None
    live = [("camp", "registration", "in_progress"), ("camp", "linking", "pending")]
    assert command_target(msg("123456"), PersonId(7), gatherings, flows, live) == Target(
        "camp", "linking", PersonId(7)
    )


def command(word: str, **payload: Any) -> InboundMessage:
    return msg(
        word,
        InboundKind.COMMAND,
        payload={"room": "!org:hs", "by": "@o:hs", **payload},
        target=Target("camp", "organisers", GATHERING_SUBJECT),
    )


GATHERING_RUN = PersonInfo(GATHERING_SUBJECT, "Camp", "en", None)
PEERS = {
    "registration": {
        PersonId(1): RunView(PersonId(1), "registered", {}),
        PersonId(2): RunView(PersonId(2), "waiting", {}),
        PersonId(3): RunView(PersonId(3), "registered", {}),
    }
}


def test_announce_needs_confirmation_then_reaches_registered_people_only() -> None:
    flow = Organisers()
    first = flow.step(
        ctx(
            command("announce", text="Bring boots"),
            person=GATHERING_RUN,
            flow=ORGANISERS,
            peers=PEERS,
        )
    )
    assert first.reply is not None and first.reply.template == "organisers/confirm"
    assert first.reply.context["count"] == 2 and not first.send
    sent = flow.step(
        ctx(
            command("confirm"),
            shared=stored(first.shared),
            person=GATHERING_RUN,
            flow=ORGANISERS,
            peers=PEERS,
        )
    )
    to = [o.to for o in sent.send if o.template == "organisers/announcement"]
    assert to == [PersonId(1), PersonId(3)]
    assert sent.shared is not None and "pending" not in stored(sent.shared)
    again = flow.step(
        ctx(
            command("confirm"),
            shared=stored(sent.shared),
            person=GATHERING_RUN,
            flow=ORGANISERS,
            peers=PEERS,
        )
    )
    assert sent.reply is not None and sent.reply.template == "organisers/sent"
    assert again.reply is not None and again.reply.template == "organisers/nothing_pending"


def test_cancel_drops_the_announcement() -> None:
    flow = Organisers()
    first = flow.step(
        ctx(command("announce", text="x"), person=GATHERING_RUN, flow=ORGANISERS, peers=PEERS)
    )
    out = flow.step(
        ctx(
            command("cancel"),
            shared=stored(first.shared),
            person=GATHERING_RUN,
            flow=ORGANISERS,
            peers=PEERS,
        )
    )
    assert out.reply is not None and out.reply.template == "organisers/cancelled"
    assert not out.send


def test_people_who_unsubscribed_get_no_announcement() -> None:
    peers = {
        "registration": {
            **PEERS["registration"],
            PersonId(3): RunView(PersonId(3), "registered", {"announcements": False}),
        }
    }
    flow = Organisers()
    first = flow.step(
        ctx(
            command("announce", text="Bring boots"),
            person=GATHERING_RUN,
            flow=ORGANISERS,
            peers=peers,
        )
    )
    sent = flow.step(
        ctx(
            command("confirm"),
            shared=stored(first.shared),
            person=GATHERING_RUN,
            flow=ORGANISERS,
            peers=peers,
        )
    )
    assert [o.to for o in sent.send if o.template == "organisers/announcement"] == [PersonId(1)]

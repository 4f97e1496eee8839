"""The engine's promises: dedupe, one transaction per message, events, timers, cursors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.app.registry import default_flows
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.core.timers import TimerLoop
from gateway.model import Channel, Identity, InboundKind, InboundMessage, PersonId, Target
from gateway.store import Store, open_store
from gateway.store.db import load_cursor
from tests.kit.engine import Clock, Echo, Recorder, gathering, renderer, text


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await open_store(tmp_path / "g.sqlite3")
    yield s
    await s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(store: Store, tmp_path: Path, clock: Clock) -> Engine:
    return Engine(
        store,
        {"registration": Echo()},
        {"camp": gathering()},
        renderer=renderer(tmp_path),
        clock=clock,
        organisers=[Identity.email("org@example.test")],
    )


async def rows(store: Store, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    async with store.read() as tx:
        return [tuple(r) for r in await tx.all(sql, params)]


async def test_a_redelivered_message_is_applied_once(engine: Engine, store: Store) -> None:
    message = text("ann@example.test", "hello", external_id="<a1@mail>")
    first = await engine.handle(message)
    again = await engine.handle(message)
    assert not first.duplicate and again.duplicate
    assert await rows(store, "SELECT status, state FROM flow_runs WHERE person_id = 1") == [
        ("n1", '{"n":1,"seen":["<a1@mail>"]}')
    ]
    assert len(await rows(store, "SELECT id FROM outbox")) == 1


async def test_a_stranger_becomes_a_person_and_is_answered_on_their_channel(
    engine: Engine, store: Store
) -> None:
    await engine.handle(text("@bo:example.test", "hi", channel=Channel.MATRIX))
    assert await rows(store, "SELECT kind, address FROM identities") == [
        ("matrix", "@bo:example.test")
    ]
    out = await rows(store, "SELECT channel, address, payload FROM outbox")
    assert out[0][:2] == ("matrix", "@bo:example.test")
    assert json.loads(str(out[0][2]))["text"] == "echo: hi"


async def test_outbox_keys_are_derived_from_the_inbound_message(
    engine: Engine, store: Store
) -> None:
    await engine.handle(text("ann@example.test", "hello", external_id="<k@mail>"))
    assert await rows(store, "SELECT idempotency_key FROM outbox") == [("email:<k@mail>#0",)]


async def test_a_flow_bug_keeps_state_tells_person_and_organisers(
    engine: Engine, store: Store
) -> None:
    await engine.handle(text("ann@example.test", "one", external_id="<one@mail>"))
    handled = await engine.handle(text("ann@example.test", "boom"))
    assert handled.outcome == "applied"
    assert await rows(store, "SELECT state FROM flow_runs WHERE person_id = 1") == [
        ('{"n":1,"seen":["<one@mail>"]}',)
    ]
    sent = await rows(store, "SELECT address, payload FROM outbox ORDER BY id")
    addresses = [a for a, _ in sent]
    assert addresses == ["ann@example.test", "ann@example.test", "org@example.test"]
    assert "something went wrong" in json.loads(str(sent[1][1]))["text"].lower()


async def test_events_reach_the_gathering_run_in_the_same_transaction(
    engine: Engine, store: Store
) -> None:
    await engine.handle(text("ann@example.test", "share"))
    await engine.handle(text("bo@example.test", "share"))
    (state,) = await rows(store, "SELECT state FROM flow_runs WHERE person_id = 0")
    assert json.loads(str(state[0])) == {"events": 2, "peers": [1, 2]}


async def test_batch_and_cursor_commit_together(engine: Engine, store: Store) -> None:
    batch = [text("ann@example.test", "a"), text("bo@example.test", "b")]
    await engine.handle_batch(batch, cursor=("test:cursor", "42"))
    assert await load_cursor(store, "test:cursor") == "42"
    assert len(await rows(store, "SELECT id FROM inbox")) == 2


async def test_timers_fire_once_and_catch_up_after_downtime(
    engine: Engine, store: Store, clock: Clock
) -> None:
    await engine.handle(text("ann@example.test", "later"))
    timers = TimerLoop(engine, clock=clock)
    assert await timers.fire_due() == 0
    clock.advance(hours=5)  # the service was down when the timer came due
    assert await timers.fire_due() == 1
    assert await timers.fire_due() == 0
    texts = [
        json.loads(str(p))["text"]
        for (p,) in await rows(store, "SELECT payload FROM outbox ORDER BY id")
    ]
    assert texts == ["echo: later", "tick"]


async def test_calendar_reply_for_unknown_invite_is_recorded_not_applied(
    engine: Engine, store: Store
) -> None:
    from gateway.model import CalendarAnswer

    await engine.handle(text("ann@example.test", "hello"))
    reply = InboundMessage(
        Channel.EMAIL,
        "cal1",
        InboundKind.CALENDAR_REPLY,
        text("x@y", "").received_at,
        Identity.email("ann@example.test"),
        calendar=CalendarAnswer("nope@x", "ACCEPTED"),
    )
    handled = await engine.handle(reply)
    assert handled.outcome == "ignored"
    assert await rows(store, "SELECT outcome FROM inbox WHERE external_id = 'cal1'") == [
        ("ignored",)
    ]


async def test_a_reply_with_someone_elses_token_is_held_and_the_owner_asked(
    engine: Engine, store: Store
) -> None:
    await engine.handle(text("ann@example.test", "hello", external_id="<h@mail>"))
    forged = InboundMessage(
        Channel.EMAIL,
        "f1",
        InboundKind.TEXT,
        text("x@y", "").received_at,
        Identity.email("mallory@example.test"),
        text="cancel",
        target=Target("camp", "registration", PersonId(1)),
    )
    handled = await engine.handle(forged)
    assert handled.outcome == "held"
    assert await rows(store, "SELECT state FROM flow_runs WHERE person_id = 1") == [
        ('{"n":1,"seen":["<h@mail>"]}',)
    ]
    (last,) = await rows(store, "SELECT address, payload FROM outbox ORDER BY id DESC LIMIT 1")
    assert last[0] == "ann@example.test"
    notice = json.loads(str(last[1]))["text"]
    assert "mallory@example.test" in notice
    # Ten more forged mails with links: no more notices today, and none quotes them.
    before = len(await rows(store, "SELECT id FROM outbox"))
    for n in range(10):
        spam = replace(forged, external_id=f"f-spam{n}", text="click http://evil.example/x")
        assert (await engine.handle(spam)).outcome == "held"
    assert len(await rows(store, "SELECT id FROM outbox")) == before
    assert "evil.example" not in notice and "cancel" not in notice


async def test_auto_replies_are_recorded_and_never_answered(engine: Engine, store: Store) -> None:
    auto = InboundMessage(
        Channel.EMAIL,
        "oof",
        InboundKind.AUTO_REPLY,
        text("x@y", "").received_at,
        Identity.email("ann@example.test"),
        text="I am away",
    )
    assert (await engine.handle(auto)).outcome == "auto_reply"
    assert await rows(store, "SELECT id FROM outbox") == []


async def test_bounces_of_our_mail_past_the_limit_alert_the_organisers_forged_ones_do_not(
    engine: Engine, store: Store
) -> None:
    """Three forged DSNs naming an address cut a person off for good. Only bounces of a
    message we sent to that address count, and mail the person proves is theirs resets it."""
    await engine.handle(text("ann@example.test", "hello"))
    recorder = Recorder()
    await OutboxWorker(store, {Channel.EMAIL: recorder}, clock=engine.clock).run_once()
    [(sent_id,)] = await rows(
        store, "SELECT external_id FROM outbox WHERE address = 'ann@example.test'"
    )

    def bounce(n: int, original: str | None) -> InboundMessage:
        return InboundMessage(
            Channel.EMAIL,
            f"b{n}",
            InboundKind.BOUNCE,
            text("x@y", "").received_at,
            Identity.email("mailer-daemon@x"),
            payload={
                "failed": ["ann@example.test"],
                "permanent": True,
                "original_message_id": original,
            },
        )

    for n, original in enumerate([None, "<forged@evil.example>", "<other@evil.example>"] * 2):
        await engine.handle(bounce(n, original))
    assert await rows(store, "SELECT failures FROM identities") == [(0,)]
    for n in range(10, 12):
        await engine.handle(bounce(n, sent_id))
    assert await rows(store, "SELECT failures FROM identities") == [(2,)]
    # Ann replies to our mail: her address works, the count starts again.
    await engine.handle(replace(text("ann@example.test", "status"), in_reply_to=sent_id))
    assert await rows(store, "SELECT failures FROM identities") == [(0,)]
    for n in range(20, 23):
        await engine.handle(bounce(n, sent_id))
    alerts = await rows(store, "SELECT address FROM outbox WHERE person_id IS NULL")
    assert alerts == [("org@example.test",)]


async def test_sent_messages_are_delivered_in_order_per_person(
    engine: Engine, store: Store
) -> None:
    for body in ("one", "two", "three"):
        await engine.handle(text("ann@example.test", body))
    recorder = Recorder(fail_transient=1)
    worker = OutboxWorker(store, {Channel.EMAIL: recorder}, clock=engine.clock, seed=1)
    await worker.run_once()  # the first row fails and waits; the later ones must wait too
    assert recorder.sent == []
    engine.clock.advance(minutes=5)  # type: ignore[attr-defined]
    while await worker.run_once():
        pass
    assert [i.body.text for i in recorder.sent] == ["echo: one", "echo: two", "echo: three"]


async def test_a_message_that_makes_the_engine_raise_is_set_aside_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Matrix event that made the engine raise stopped the service, and again on restart
    (the sync batch is one job). It is now recorded failed, the organisers told, and its
    batch-mates and the cursor commit."""
    import gateway.core.engine as engine_module

    real_route = engine_module.route

    async def route(tx: Any, message: InboundMessage, *args: Any) -> Any:
        if message.text == "boom":
            raise KeyError("a bug this message triggers")
        return await real_route(tx, message, *args)

    monkeypatch.setattr(engine_module, "route", route)
    store = await open_store(tmp_path / "g.sqlite3")
    try:
        engine = Engine(
            store,
            default_flows(),
            {"camp": gathering()},
            organisers=[Identity.email("org@example.org")],
        )
        batch = [
            text("@ana:hs", "hello", channel=Channel.MATRIX),
            text("@bo:hs", "boom", channel=Channel.MATRIX),
            text("@cy:hs", "hello", channel=Channel.MATRIX),
        ]
        results = await engine.handle_batch(batch, cursor=("matrix", "s42"))
        assert [r.outcome for r in results] == ["applied", "failed", "applied"]
        assert await load_cursor(store, "matrix") == "s42"
        again = await engine.handle(batch[1])  # redelivered after a restart: no crash loop
        assert again.duplicate
        async with store.read() as tx:
            alert = await tx.one("SELECT payload FROM outbox WHERE address = 'org@example.org'")
        assert alert is not None and "a bug this message triggers" in alert[0]
    finally:
        await store.close()

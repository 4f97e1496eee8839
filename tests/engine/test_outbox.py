"""The outbox worker: at-least-once delivery with stable keys, backoff, dead letters."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker, backoff, requeue_dead
from gateway.model import (
    GATHERING_SUBJECT,
    MAX_ATTACHMENT_BYTES,
    Attachment,
    Channel,
    Identity,
    Outgoing,
    OutKind,
)
from gateway.store import Store, open_store
from tests.kit.engine import Clock, Echo, Recorder, gathering, renderer, text


@pytest.fixture
async def setup(tmp_path: Path) -> tuple[Engine, Store, Clock]:
    store = await open_store(tmp_path / "g.sqlite3")
    clock = Clock()
    engine = Engine(
        store,
        {"registration": Echo()},
        {"camp": gathering()},
        renderer=renderer(tmp_path),
        clock=clock,
        organisers=[Identity.email("org@example.test")],
    )
    yield engine, store, clock
    await store.close()


async def statuses(store: Store) -> list[tuple[str, int]]:
    async with store.read() as tx:
        return [
            (r[0], r[1]) for r in await tx.all("SELECT status, attempts FROM outbox ORDER BY id")
        ]


async def test_a_row_claimed_before_a_crash_is_sent_again_with_the_same_key(
    setup: tuple[Engine, Store, Clock], tmp_path: Path
) -> None:
    engine, store, clock = setup
    await engine.handle(text("ann@example.test", "hello"))
    crashed = OutboxWorker(store, {Channel.EMAIL: Recorder()}, clock=clock)
    (claimed,) = await crashed.claim()  # marked 'sending'; the process dies before sending
    assert await statuses(store) == [("sending", 1)]

    await store.close()  # the restart: a new connection, a new worker
    store2 = await open_store(tmp_path / "g.sqlite3")
    recorder = Recorder()
    worker = OutboxWorker(store2, {Channel.EMAIL: recorder}, clock=clock)
    assert await worker.recover() == 1
    assert await worker.run_once() == 1
    assert [i.idempotency_key for i in recorder.sent] == [claimed.idempotency_key]
    assert await statuses(store2) == [("sent", 2)]
    assert await worker.run_once() == 0
    await store2.close()


async def test_transient_failures_back_off_and_honour_retry_after(
    setup: tuple[Engine, Store, Clock],
) -> None:
    engine, store, clock = setup
    await engine.handle(text("ann@example.test", "hello"))
    recorder = Recorder(fail_transient=1, retry_after=600)
    worker = OutboxWorker(store, {Channel.EMAIL: recorder}, clock=clock, seed=3)
    await worker.run_once()
    assert await statuses(store) == [("pending", 1)]
    clock.advance(seconds=599)
    assert await worker.run_once() == 0  # the server asked for 600 s
    clock.advance(seconds=2)
    assert await worker.run_once() == 1
    assert await statuses(store) == [("sent", 2)]


async def test_permanent_failure_is_dead_and_the_organisers_are_told_once(
    setup: tuple[Engine, Store, Clock],
) -> None:
    engine, store, clock = setup
    await engine.handle(text("ann@example.test", "hello"))
    failing = Recorder(fail_permanent=True)
    worker = OutboxWorker(
        store, {Channel.EMAIL: failing}, clock=clock, alert=engine.enqueue_alert_in
    )
    await worker.run_once()  # ann's message dies; an alert to the organiser is queued
    await worker.run_once()  # the alert dies too (same failing transport): no alert about it
    async with store.read() as tx:
        rows = await tx.all("SELECT address, status, payload FROM outbox ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [
        ("ann@example.test", "dead"),
        ("org@example.test", "dead"),
    ]
    assert "550 no such user" in json.loads(rows[1][2])["text"]


async def test_an_outage_of_hours_loses_nothing_and_only_days_end_dead(
    setup: tuple[Engine, Store, Clock],
) -> None:
    """After 8 attempts (about ten minutes of SMTP outage) rows went dead and were never sent.
    Transient failures now retry until the age limit; `requeue_dead` sends dead rows again."""
    engine, store, clock = setup
    await engine.handle(text("ann@example.test", "hello"))
    down = Recorder(fail_transient=10_000)
    worker = OutboxWorker(
        store, {Channel.EMAIL: down}, clock=clock, give_up_after=timedelta(days=3)
    )
    for _ in range(200):  # ten hours of outage, a try at least every five minutes
        await worker.run_once()
        clock.advance(minutes=3)
    [(status, attempts)] = await statuses(store)
    assert status == "pending" and attempts > 60
    clock.advance(days=3)
    await worker.run_once()
    assert (await statuses(store))[0][0] == "dead"
    assert await requeue_dead(store, now=clock.now) == 1
    up = Recorder()
    worker = OutboxWorker(store, {Channel.EMAIL: up}, clock=clock)
    await worker.run_once()
    assert (await statuses(store))[0][0] == "sent" and len(up.sent) == 1


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff(n, rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        nominal = min(300.0, 5.0 * 2 ** (n - 1))
        assert 0.75 * nominal <= delay <= 1.25 * nominal


async def test_an_unreadable_row_is_dead_with_its_reason_and_the_rest_is_sent(
    setup: tuple[Engine, Store, Clock],
) -> None:
    """A row whose payload cannot be read never stops the worker: it is buried with the
    reason, the organisers are told, and the rows behind it go out."""
    engine, store, clock = setup
    await engine.handle(text("ann@example.test", "hello"))
    await engine.handle(text("bo@example.test", "hello"))
    async with store.transaction() as tx:
        # Cut short, as a disk that filled up mid-write could leave it.
        await tx.execute(
            "UPDATE outbox SET payload = substr(payload, 1, 20) WHERE address = ?",
            ("ann@example.test",),
        )
    recorder = Recorder()
    worker = OutboxWorker(
        store, {Channel.EMAIL: recorder}, clock=clock, alert=engine.enqueue_alert_in
    )
    while await worker.run_once():
        pass
    async with store.read() as tx:
        rows = await tx.all("SELECT address, status, last_error FROM outbox ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [
        ("ann@example.test", "dead"),
        ("bo@example.test", "sent"),
        ("org@example.test", "sent"),
    ]
    assert rows[0][2].startswith("unreadable outbox row: payload is not JSON: ")
    [alert] = [i for i in recorder.sent if i.address == "org@example.test"]
    assert "ann@example.test" in alert.body.text and "payload is not JSON" in alert.body.text


async def test_attachments_over_the_limit_or_on_a_poll_are_refused_when_queued(
    setup: tuple[Engine, Store, Clock],
) -> None:
    engine, store, clock = setup
    big = Attachment("big.bin", "application/octet-stream", bytes(MAX_ATTACHMENT_BYTES + 1))
    small = Attachment("a.txt", "text/plain", b"a")
    over = Outgoing(to=GATHERING_SUBJECT, template="t", attachments=(big,), address="x@y.z")
    poll = Outgoing(
        to=GATHERING_SUBJECT, template="t", kind=OutKind.POLL, options=("a",), attachments=(small,)
    )
    for out, reason in ((over, "over the limit of 5,242,880 bytes"), (poll, "only TEXT")):
        async with store.transaction() as tx:
            with pytest.raises(ValueError, match=reason):
                await engine.enqueuer.enqueue(
                    tx, [out], target=None, gathering=None, cause=None, index_base=0, now=clock.now
                )

"""The running service: config edits take effect without a restart and lose no answer."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from gateway.app.service import Channels, Service, build_engine, keep_running
from gateway.config import load_config
from gateway.core.engine import Engine
from gateway.model import Channel
from tests.kit.engine import RETREAT_TOML, Recorder, text

GATHERING = RETREAT_TOML
EXTRA_QUESTION = """
[[registration.questions]]
id = "nights"
type = "number"
prompt = "How many nights?"
min = 1
max = 3
"""


async def wait_for(predicate: object, limit: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_gathering_edits_apply_live_by_watch_and_by_sighup(tmp_path: Path) -> None:
    gathering_file = tmp_path / "retreat.toml"
    gathering_file.write_text(GATHERING)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text('gathering_files = ["*.toml"]\n[store]\npath = "gateway.sqlite3"\n')
    config = load_config(config_file)
    recorder = Recorder(channel=Channel.MATRIX)

    def channels(_config: object, _engine: Engine, _wake: object) -> Channels:
        return Channels(senders={Channel.MATRIX: recorder})

    engine = await build_engine(config)
    service = Service(config, engine, channels)
    service.watch_interval = 0.05
    running = asyncio.create_task(service.run())

    async def ana(words: str) -> None:  # what a transport does: handle, then wake the outbox
        await engine.handle(text("@ana:example.test", words, channel=Channel.MATRIX))
        service.wake()

    # Someone starts registering and answers the only question.
    await ana("hello")
    await ana("vegan")
    await wait_for(
        lambda: any("Diet" in i.body.text or "vegan" in i.body.text for i in recorder.sent)
    )

    # The organiser adds a question: the watcher reloads; the given answer is kept.
    gathering_file.write_text(GATHERING + EXTRA_QUESTION)
    await wait_for(lambda: len(engine.gatherings["retreat"].registration.questions) == 2)

    # Ana is asked the new question before she can confirm.
    before = len(recorder.sent)
    await ana("yes")
    await wait_for(lambda: len(recorder.sent) > before)
    assert "How many nights?" in recorder.sent[-1].body.text

    # A second gathering file appears; SIGHUP makes the service read it now.
    service.watch_interval = 3600
    (tmp_path / "autumn.toml").write_text(GATHERING.replace("retreat", "autumn"))
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(lambda: "autumn" in engine.gatherings)

    # A broken edit is refused and the running config kept.
    gathering_file.write_text(GATHERING.replace("capacity = 20", "capacity = -1"))
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.2)
    assert len(engine.gatherings["retreat"].registration.questions) == 2

    async with engine.store.read() as tx:
        row = await tx.one(
            "SELECT state FROM flow_runs WHERE person_id = 1 AND flow = 'registration'"
        )
    assert row is not None and json.loads(row[0])["answers"]["diet"] == "vegan"

    service.stop.set()
    await asyncio.wait_for(running, 10)


async def test_a_locked_database_is_waited_out_not_fatal(tmp_path: Path) -> None:
    """Another writer holding the lock past busy_timeout made the outbox loop raise and the
    service exit. Every loop now waits it out and carries on."""
    config_file = tmp_path / "gateway.toml"
    (tmp_path / "retreat.toml").write_text(GATHERING)
    config_file.write_text('gathering_files = ["*.toml"]\n[store]\npath = "g.sqlite3"\n')
    config = load_config(config_file)
    engine = await build_engine(config)
    await engine.store.conn.execute("PRAGMA busy_timeout = 50")  # the real one is 5 s
    await engine.handle(text("@ana:example.test", "hello", channel=Channel.MATRIX))
    recorder = Recorder(channel=Channel.MATRIX)
    worker = Service(config, engine, lambda *_: Channels(senders={Channel.MATRIX: recorder})).outbox
    holder = sqlite3.connect(tmp_path / "g.sqlite3")
    holder.execute("BEGIN IMMEDIATE")  # e.g. a backup or a command beside the service
    stop = asyncio.Event()
    running = asyncio.create_task(keep_running("outbox", worker.run, stop, first_wait=0.05))
    await asyncio.sleep(0.5)
    assert not running.done() and not recorder.sent
    holder.rollback()
    holder.close()
    await wait_for(lambda: recorder.sent)
    stop.set()
    await asyncio.wait_for(running, 10)
    await engine.store.close()


async def test_a_broken_gathering_file_is_logged_once_not_every_look(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gathering_file = tmp_path / "retreat.toml"
    gathering_file.write_text(GATHERING)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text('gathering_files = ["*.toml"]\n[store]\npath = "g.sqlite3"\n')
    config = load_config(config_file)
    engine = await build_engine(config)
    service = Service(config, engine, lambda *_: Channels())
    service.watch_interval = 0.02
    running = asyncio.create_task(service.run())
    with caplog.at_level(logging.ERROR, logger="gateway.app.service"):
        gathering_file.write_text(GATHERING.replace("capacity = 20", "capacity = -1"))
        await asyncio.sleep(0.5)  # 25 looks at the files
    refused = [r for r in caplog.records if "config not reloaded" in r.getMessage()]
    assert len(refused) == 1
    assert engine.gatherings["retreat"].capacity == 20  # the running config stays
    service.stop.set()
    await asyncio.wait_for(running, 10)

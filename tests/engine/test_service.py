"""The running service: config edits take effect without a restart and lose no answer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from gateway.app.service import Channels, Service, build_engine
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
    await wait_for(lambda: any("Diet" in i.text or "vegan" in i.text for i in recorder.sent))

    # The organiser adds a question: the watcher reloads; the given answer is kept.
    gathering_file.write_text(GATHERING + EXTRA_QUESTION)
    await wait_for(lambda: len(engine.gatherings["retreat"].registration.questions) == 2)

    # Ana is asked the new question before she can confirm.
    before = len(recorder.sent)
    await ana("yes")
    await wait_for(lambda: len(recorder.sent) > before)
    assert "How many nights?" in recorder.sent[-1].text

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

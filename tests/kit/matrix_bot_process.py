"""The bot as its own process (store + engine + MatrixTransport + outbox worker, echo flow),
so tests can kill -9 it mid-conversation and start it again on the same store.

    python -m tests.kit.matrix_bot_process HOMESERVER USER_ID TOKEN DIR
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from gateway.channels.matrix.transport import MIGRATIONS, MatrixTransport
from gateway.config import MatrixSettings, Secret
from gateway.core.engine import Engine
from gateway.core.outbox import OutboxWorker
from gateway.core.render import Renderer
from gateway.model import Channel
from gateway.store.db import open_store
from tests.kit.engine import gathering
from tests.kit.matrix import Echo


async def main(homeserver: str, user_id: str, token: str, directory: Path) -> None:
    templates = directory / "templates" / "en" / "test"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "say.txt.j2").write_text("{{ words }}\n")
    store = await open_store(directory / "gateway.sqlite3", migrations=MIGRATIONS)
    engine = Engine(
        store,
        {"registration": Echo()},
        {"camp": gathering("camp")},
        renderer=Renderer(directory / "templates"),
    )
    settings = MatrixSettings(
        homeserver=homeserver,
        user_id=user_id,
        access_token=Secret(value=token),
        store_path=directory / "mx",
    )
    transport = MatrixTransport(settings, store, sync_timeout_ms=5000)
    outbox = OutboxWorker(store, {Channel.MATRIX: transport})
    transport.wake = outbox.wake
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("bot ready", flush=True)
    await asyncio.gather(transport.run(engine, stop), outbox.run(stop))
    await transport.close()
    await store.close()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("nio").setLevel(logging.WARNING)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))

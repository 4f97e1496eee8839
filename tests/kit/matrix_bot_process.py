"""The bot as its own process (the service as `running_bot` wires it, with the test flow),
so tests can kill -9 it mid-conversation and start it again on the same store.

    python -m tests.kit.matrix_bot_process HOMESERVER USER_ID TOKEN DIR
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from gateway.config import MatrixSettings, Secret
from tests.kit.matrix import running_bot


async def main(homeserver: str, user_id: str, token: str, directory: Path) -> None:
    settings = MatrixSettings(
        homeserver=homeserver,
        user_id=user_id,
        access_token=Secret(value=token),
        store_path=directory / "mx",
    )
    async with running_bot(directory, settings) as bot:
        print("bot ready", flush=True)
        # The service stops on SIGTERM (its own handler), as `gateway run` does.
        await bot.service.stop.wait()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("nio").setLevel(logging.WARNING)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))

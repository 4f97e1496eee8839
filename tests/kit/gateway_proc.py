"""The email side of the gateway as a separate process, so tests can kill -9 it.

    python -m tests.kit.gateway_proc CONFIG.json

CONFIG has db, templates, address, password, imap_port, smtp_port and optionally
"crash": "after-commit", which SIGKILLs the process right after the engine committed a
mail and before it is moved out of the folder: the worst moment, hit deterministically.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from tests.kit import email as kit


async def main(config: dict[str, object]) -> None:
    email = kit.settings(
        str(config["address"]),
        smtp_port=int(str(config["smtp_port"])),
        imap=(int(str(config["imap_port"])), str(config["password"])),
    )
    async with kit.gateway(Path(str(config["db"])), email, Path(str(config["templates"]))) as gw:
        if config.get("crash") == "after-commit":
            gw.intake.after_commit = lambda: os.kill(os.getpid(), signal.SIGKILL)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        reader = gw.reader()
        await asyncio.gather(reader.run(stop), gw.outbox.run(stop))


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))

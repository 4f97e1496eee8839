"""kill -9 of the bot mid-conversation: nothing lost, nothing duplicated in the person's room."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.kit.matrix import Inbox, room_history, sync_until
from tests.servers import SynapseServer
from tests.wire.matrix.test_matrix_transport import _wait_joined, open_dm, say, text

ROOT = Path(__file__).resolve().parents[3]


def start_bot(synapse: SynapseServer, user: Any, directory: Path) -> subprocess.Popen[bytes]:
    log = open(directory / "bot.log", "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kit.matrix_bot_process",
            synapse.url,
            user.user_id,
            user.access_token,
            str(directory),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


async def test_kill_9_mid_conversation_loses_and_duplicates_nothing(
    synapse: SynapseServer, matrix_client: Any, tmp_path: Path
) -> None:
    bot_user, maya = synapse.new_user("bot"), synapse.new_user("maya")
    client = await matrix_client(maya)
    inbox = Inbox(client, bot_user.user_id)
    bot = start_bot(synapse, bot_user, tmp_path)
    try:
        room = await open_dm(client, bot_user.user_id)
        await _wait_joined(client, room, bot_user.user_id)
        for i in range(10):
            await say(client, room, text(f"m{i}"))
        await inbox.wait_for(lambda e: e["content"].get("body") == "echo: m2")
        os.kill(bot.pid, signal.SIGKILL)  # mid-stream: some answered, some not yet
        bot.wait()
        for i in range(10, 15):  # written while the bot is down
            await say(client, room, text(f"m{i}"))
        bot = start_bot(synapse, bot_user, tmp_path)
        expected = {f"echo: m{i}" for i in range(15)}
        await sync_until(
            client, lambda: expected <= set(inbox.bodies()), rounds=80, seen=inbox.seen
        )
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait()
    history = await room_history(client, room, bot_user.user_id)
    counts = collections.Counter(
        e["content"].get("body") for e in history if e["type"] == "m.room.message"
    )
    assert {body: n for body, n in counts.items() if n != 1} == {}
    assert set(counts) == expected

"""The real registration flow over Matrix, run by the service as `gateway run` wires it.

A participant (a real nio client) opens a direct room with the bot on a real Synapse and
answers the way Element users do: a text reply, a vote on a poll (stable `m.poll.response`),
a ✅ reaction to a yes/no question, a vote on a multiple-choice poll (Element's unstable
MSC3381 form), then an `m.replace` edit of the first answer after the summary. The outcome
is read back through the organisers' CSV export, and the room's history is compared with
the outbox: every message the bot meant to send is in the room exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nio import AsyncClient

from gateway.app.channels import build_service
from gateway.config import load_config
from gateway.ops.reports import export_csv
from tests.kit.matrix import Inbox, room_history
from tests.kit.service import camp_toml, matrix_toml
from tests.servers import MatrixUser, SynapseServer
from tests.wire.matrix.test_matrix_transport import _wait_joined, open_dm, say, text

CONFIG = (
    camp_toml("{matrix}", badge_id="badge")
    + """
[[gatherings.camp.registration.questions]]
id = "car"
type = "yes_no"
prompt = "Are you coming by car?"

[[gatherings.camp.registration.questions]]
id = "days"
type = "multiple_choice"
prompt = "Which days can you help in the kitchen?"
options = ["Thursday", "Friday", "Saturday", "Sunday"]
"""
)


def write_config(folder: Path, synapse: SynapseServer, bot: MatrixUser) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        CONFIG.format(
            matrix=matrix_toml(synapse.url, bot.user_id, bot.access_token, folder / "matrix")
        )
    )
    return path


def body(event: dict[str, Any]) -> str:
    return str(event.get("content", {}).get("body", ""))


def asking(words: str, event_type: str = "m.room.message") -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == event_type and words in body(e)


async def test_registration_in_a_direct_room_with_poll_reaction_text_and_edit(
    synapse: SynapseServer,
    matrix_client: Any,
    tmp_path: Path,
) -> None:
    bot_user, ana = synapse.new_user("bot"), synapse.new_user("ana")
    config = load_config(write_config(tmp_path, synapse, bot_user))
    service = await build_service(config)
    engine = service.engine
    running = asyncio.create_task(service.run())
    client: AsyncClient = await matrix_client(ana)
    inbox = Inbox(client, bot_user.user_id)
    try:
        room = await open_dm(client, bot_user.user_id)
        await _wait_joined(client, room, bot_user.user_id)
        await say(client, room, text("hello"))
        await inbox.wait_for(asking("welcome"))
        await inbox.wait_for(asking("1. What name would you like on your badge?"))
        typo = await say(client, room, text("Ana Lmia"))

        diet = await inbox.wait_for(asking("What do you eat?", "m.poll.start"))
        poll = diet["content"]["m.poll"]
        assert [a["m.text"][0]["body"] for a in poll["answers"]] == [
            "Everything",
            "Vegetarian",
            "Vegan",
        ]
        assert poll["max_selections"] == 1
        assert [body(diet).count(o) for o in ("Everything", "Vegetarian", "Vegan")] == [1, 1, 1]
        await say(
            client,
            room,
            {
                "m.relates_to": {"rel_type": "m.reference", "event_id": diet["event_id"]},
                "m.selections": [poll["answers"][1]["m.id"]],
            },
            "m.poll.response",
        )

        car = await inbox.wait_for(asking("3. Are you coming by car?"))
        # A second thought on the older diet poll: it changes the diet, not the car answer.
        await say(
            client,
            room,
            {
                "m.relates_to": {"rel_type": "m.reference", "event_id": diet["event_id"]},
                "m.selections": [poll["answers"][2]["m.id"]],
            },
            "m.poll.response",
        )
        await inbox.wait_for(lambda e: "is updated" in body(e))
        await say(
            client,
            room,
            {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": car["event_id"],
                    "key": "✅",
                }
            },
            "m.reaction",
        )

        days = await inbox.wait_for(asking("Which days", "m.poll.start"))
        unstable = days["content"]["org.matrix.msc3381.poll.start"]
        assert unstable["max_selections"] == 4
        ids = [a["id"] for a in unstable["answers"]]
        await say(
            client,
            room,
            {
                "m.relates_to": {"rel_type": "m.reference", "event_id": days["event_id"]},
                "org.matrix.msc3381.poll.response": {"answers": [ids[1], ids[3]]},
            },
            "org.matrix.msc3381.poll.response",
        )

        summary = await inbox.wait_for(asking("Here is what you told us"))
        assert "Ana Lmia" in body(summary)
        assert "Vegan" in body(summary) and "Friday, Sunday" in body(summary)

        # Ana spots the typo in the summary and edits her first answer in place.
        await say(
            client,
            room,
            {
                **text(" * Ana Lima"),
                "m.new_content": text("Ana Lima"),
                "m.relates_to": {"rel_type": "m.replace", "event_id": typo},
            },
        )
        fixed = await inbox.wait_for(
            lambda e: "Here is what you told us" in body(e) and "Ana Lima" in body(e)
        )
        assert "Ana Lmia" not in body(fixed)

        await say(client, room, text("yes"))
        await inbox.wait_for(asking("You're registered for Camp 2027"))

        rows = list(
            csv.DictReader(io.StringIO(await export_csv(engine.store, config.gatherings["camp"])))
        )
        async with engine.store.read() as tx:
            sent = await tx.all("SELECT status, external_id FROM outbox WHERE channel = 'matrix'")
    finally:
        service.stop.set()
        await running

    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["channel"], row["matrix"]) == ("registered", "matrix", ana.user_id)
    answers = (row["answer:badge"], row["answer:diet"], row["answer:car"])
    assert answers == ("Ana Lima", "Vegan", "True")
    assert row["answer:days"] == "Friday; Sunday"

    # The room as the server keeps it: each message of the bot once, none missing, in order.
    history = await room_history(client, room, bot_user.user_id)
    kinds = [(e["type"], body(e).split("\n")[0]) for e in history]
    assert [t for t, _ in kinds] == [
        "m.room.message",
        "m.room.message",
        "m.poll.start",
        "m.room.message",
        "m.room.message",
        "m.poll.start",
        "m.room.message",
        "m.room.message",
        "m.room.message",
    ], kinds
    assert {s["status"] for s in sent} == {"sent"}
    event_ids = collections.Counter(e["event_id"] for e in history)
    assert event_ids == collections.Counter(s["external_id"] for s in sent)
    assert max(collections.Counter(body(e) for e in history).values()) == 1

"""How an organiser's command reaches a flow: as a COMMAND to the gathering-level run of it.

The organisers' router (gateway/ops/router.py), the demo and the tests change a flow's state
the same way — through the engine, in one transaction, with the outbox for what it sends —
so none of them can disagree with a running service.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from gateway.core.engine import Engine, Handled
from gateway.model import (
    GATHERING_SUBJECT,
    Caller,
    Channel,
    InboundKind,
    InboundMessage,
    Target,
)


async def send_command(
    engine: Engine,
    slug: str,
    flow: str,
    name: str,
    payload: Mapping[str, Any] | None = None,
    *,
    external_id: str | None = None,
    caller: Caller | None = None,
    by: str = "terminal",
) -> Handled:
    """Apply the COMMAND `name` to the gathering-level run of `flow`. `external_id` makes a
    repeat a duplicate (the router derives it from the organiser's message); the flow's
    `Outcome.reply` goes to `caller`."""
    return await engine.handle(
        InboundMessage(
            channel=Channel.INTERNAL,
            external_id=external_id or f"{flow}:{slug}:{name}:{uuid.uuid4().hex}",
            kind=InboundKind.COMMAND,
            received_at=engine.clock(),
            text=name,
            payload=dict(payload or {}),
            target=Target(slug, flow, GATHERING_SUBJECT),
            caller=caller,
            meta={"by": by},
        )
    )

"""How an organiser's command reaches a flow: as a COMMAND to the gathering's run of it.

The `gateway` command, the organisers' room and the flows' own timers all change a flow's
state the same way — through the engine, in one transaction, with the outbox for what it
sends — so none of them can disagree with a running service.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from gateway.core.engine import Engine, Handled
from gateway.model import GATHERING_SUBJECT, Channel, InboundKind, InboundMessage, Target


async def send_command(
    engine: Engine, slug: str, flow: str, name: str, payload: Mapping[str, Any] | None = None
) -> Handled:
    """Apply the COMMAND `name` to the gathering-level run of `flow`."""
    return await engine.handle(
        InboundMessage(
            channel=Channel.INTERNAL,
            external_id=f"{flow}:{slug}:{name}:{uuid.uuid4().hex}",
            kind=InboundKind.COMMAND,
            received_at=engine.clock(),
            text=name,
            payload=dict(payload or {}),
            target=Target(slug, flow, GATHERING_SUBJECT),
        )
    )

"""Outbox items built by hand for transport tests, from one flat list of fields."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from gateway.model import (
    Channel,
    GroupBody,
    OutboxId,
    OutboxItem,
    OutKind,
    PollBody,
    TextBody,
)

_HEADER = frozenset(f.name for f in fields(OutboxItem)) - {"body"}
_BODIES: dict[OutKind, type[TextBody | PollBody | GroupBody]] = {
    OutKind.TEXT: TextBody,
    OutKind.POLL: PollBody,
    OutKind.GROUP: GroupBody,
}


def outbox_item(kind: OutKind = OutKind.TEXT, **given: Any) -> OutboxItem:
    """An item of `kind`: header fields (id, address, …) go to the item, the rest to its body
    (a field the kind does not have fails, as it would in a stored row)."""
    header: dict[str, Any] = {
        "id": OutboxId(1),
        "idempotency_key": "k",
        "channel": Channel.EMAIL,
        "address": "ana@example.net",
        "person": None,
        "gathering": "camp",
        "flow": None,
        "attempts": 1,
    }
    header.update({k: v for k, v in given.items() if k in _HEADER})
    body = _BODIES[kind](**{k: v for k, v in given.items() if k not in _HEADER})
    return OutboxItem(**header, body=body)

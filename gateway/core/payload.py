"""The JSON in an outbox row's `payload` column, written by the enqueuer, read by the worker.

One flat object: the row's threading (`is_reply`, `in_reply_to`, `thread_root`,
`reply_token`) beside the body's fields and its `kind`. Flat, so the SQL that reads a field
of it (`$.subject`, `$.questions`) works on rows of every age.

Rows written before the body was typed have no `kind` inside (it is only the row's column)
and carry every kind's fields (`options: []` on a text message). They are read by taking
the kind from the column and dropping the other kinds' fields; no migration rewrites them,
because queued rows live for seconds to days, rows erased for privacy hold other JSON, and
a gateway rolled back to the previous version still reads the new rows (it looks up each
field with a default; it would drop the files).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from gateway.model import GroupBody, OutboxBody, OutKind, PollBody, TextBody

#: The payload's fields that belong to the row's header, not to its body.
_HEADER = ("is_reply", "in_reply_to", "thread_root", "reply_token")
_BODY_FIELDS = {
    body.model_fields["kind"].default: frozenset(body.model_fields)
    for body in (TextBody, PollBody, GroupBody)
}
#: What the untyped encoder wrote into every row, whatever its kind.
_UNTYPED_FIELDS = frozenset(
    ("subject", "text", "html", "options", "multiple", "invite", "group", "group_addresses",
     "room_name", "room_topic", "closes", "questions", *_HEADER)
)  # fmt: skip


class MalformedPayload(ValueError):
    """An outbox row whose payload cannot be read as a message of its kind."""


class RowPayload(BaseModel):
    """An outbox row's payload: how the message threads, and its body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    is_reply: bool = True
    in_reply_to: str | None = None
    thread_root: str | None = None
    reply_token: str | None = None
    body: OutboxBody

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "body" in data:
            return data
        return {
            **{k: data[k] for k in _HEADER if k in data},
            "body": {k: v for k, v in data.items() if k not in _HEADER},
        }

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        body = data.pop("body")
        return {**data, **body}


def read_payload(text: str, kind: str) -> RowPayload:
    """The payload of a row whose `kind` column is `kind`; raises MalformedPayload."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise MalformedPayload(f"payload is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedPayload(f"payload is not a JSON object but {type(raw).__name__}")
    if kind not in _BODY_FIELDS:
        raise MalformedPayload(f"unknown kind {kind!r}")
    if raw.get("erased"):
        raise MalformedPayload("its personal data was erased (gateway forget)")
    if "kind" not in raw:
        raw = _from_untyped(raw, OutKind(kind))
    elif raw["kind"] != kind:
        raise MalformedPayload(f"payload is a {raw['kind']!r} message in a {kind!r} row")
    try:
        return RowPayload.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        raise MalformedPayload(f"payload of a {kind!r} row: {problems}") from None


def _from_untyped(raw: dict[str, Any], kind: OutKind) -> dict[str, Any]:
    """A row written before payloads carried their kind: without the other kinds' fields.

    Only fields that encoder wrote are dropped, so anything else still fails validation."""
    other = _UNTYPED_FIELDS - _BODY_FIELDS[kind] - set(_HEADER)
    return {**{k: v for k, v in raw.items() if k not in other}, "kind": kind.value}

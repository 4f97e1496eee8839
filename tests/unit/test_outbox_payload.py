"""An outbox row's payload: typed bodies per kind, rows written before them, broken rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.core.outbox import item_from_row
from gateway.core.payload import MalformedPayload, RowPayload, read_payload
from gateway.model import Attachment, GroupBody, Invite, OutboxBody, PollBody, TextBody

INVITE = Invite(
    uid="camp-1@example.test",
    sequence=1,
    method="REQUEST",
    summary="Camp",
    start=datetime(2027, 7, 1, 16, tzinfo=timezone(timedelta(hours=2))),
    end=datetime(2027, 7, 5, 12, tzinfo=UTC),
    tzid="Europe/Lisbon",
    location="The barn",
    rrule="FREQ=WEEKLY;BYDAY=TH",
)
BODIES: list[OutboxBody] = [
    TextBody(
        subject="Welcome",
        text="Hello",
        html="<p>Hello</p>",
        invite=INVITE,
        questions=("diet",),
        attachments=(
            Attachment("map.png", "image/png", bytes(range(256))),
            Attachment("notes.txt", "text/plain", b""),
        ),
    ),
    PollBody(text="What do you eat?", options=("vegan", "omnivore"), multiple=True),
    GroupBody(
        subject="Crew 1",
        text="Meet your crew",
        group_addresses=("a@example.net", "b@example.net"),
        room_name="Camp — Crew 1",
        room_topic="Crew 1 of Camp",
        closes=True,
        invite=INVITE,
    ),
]


def row(payload: str, kind: str, **columns: Any) -> dict[str, Any]:
    return {
        "id": 5,
        "idempotency_key": "email:<m1@example.net>#0",
        "channel": "email",
        "address": "ana@example.net",
        "kind": kind,
        "person_id": 7,
        "gathering": "camp",
        "flow": "registration",
        "attempts": 1,
        "created_at": "2027-01-20T09:00:00+00:00",
        "payload": payload,
        **columns,
    }


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.kind.value)
def test_each_kind_comes_back_as_it_was_written(body: OutboxBody) -> None:
    written = RowPayload(is_reply=False, in_reply_to="<p@x>", reply_token="tok", body=body)
    text = written.model_dump_json()
    stored = json.loads(text)
    # Flat, with the kind inside: the SQL reading $.subject and $.questions keeps working.
    assert stored["kind"] == body.kind.value and stored["subject"] == body.subject
    assert "body" not in stored
    item = item_from_row(row(text, body.kind.value))
    assert item.body == body and type(item.body) is type(body)
    assert (item.is_reply, item.in_reply_to, item.thread_root, item.reply_token) == (
        False,
        "<p@x>",
        None,
        "tok",
    )


def test_attachments_are_base64_in_the_row() -> None:
    body = TextBody(text="x", attachments=(Attachment("a.bin", "x/y", b"\x00\xffhi"),))
    stored = json.loads(RowPayload(body=body).model_dump_json())
    assert stored["attachments"] == [{"name": "a.bin", "mime": "x/y", "data": "AP9oaQ=="}]


def untyped_payload(**fields: Any) -> str:
    """The JSON the encoder wrote before payloads carried their kind (every key, always)."""
    invite = fields.pop("invite", None)
    payload = {
        "subject": "",
        "text": "",
        "html": "",
        "options": [],
        "multiple": False,
        "invite": None,
        "is_reply": True,
        "group": None,
        "group_addresses": [],
        "room_name": "",
        "room_topic": "",
        "closes": False,
        "in_reply_to": None,
        "thread_root": None,
        "reply_token": None,
        "questions": [],
        **fields,
    }
    if invite is not None:  # as `asdict` and isoformat() wrote it
        payload["invite"] = {
            "uid": invite.uid,
            "sequence": invite.sequence,
            "method": invite.method,
            "summary": invite.summary,
            "start": invite.start.isoformat(),
            "end": invite.end.isoformat(),
            "tzid": invite.tzid,
            "location": invite.location,
            "description": invite.description,
            "all_day": invite.all_day,
            "rrule": invite.rrule,
        }
    # The old code stored it with the store's dumps: compact, non-ASCII kept.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def test_a_text_row_written_before_the_typed_payload_loads() -> None:
    text = untyped_payload(
        subject="Bienvenue à Camp",
        text="Hello",
        html="<p>Hello</p>",
        invite=INVITE,
        is_reply=False,
        in_reply_to="<p1@example.net>",
        thread_root="email:<first@example.net>#0",
        reply_token="tok",
        questions=["diet", "nights"],
    )
    item = item_from_row(row(text, "text"))
    assert item.body == TextBody(
        subject="Bienvenue à Camp",
        text="Hello",
        html="<p>Hello</p>",
        invite=INVITE,
        questions=("diet", "nights"),
    )
    assert item.is_reply is False and item.in_reply_to == "<p1@example.net>"
    assert item.thread_root == "email:<first@example.net>#0" and item.reply_token == "tok"
    assert item.created_at == datetime(2027, 1, 20, 9, tzinfo=UTC)


def test_poll_and_group_rows_written_before_the_typed_payload_load() -> None:
    poll = untyped_payload(text="Eat?", options=["vegan", "omnivore"], multiple=True)
    assert item_from_row(row(poll, "poll")).body == PollBody(
        text="Eat?", options=("vegan", "omnivore"), multiple=True
    )
    group = untyped_payload(
        text="Meet",
        group="crew-1",
        group_addresses=["a@example.net"],
        room_name="Crew 1",
        closes=True,
        is_reply=False,
    )
    item = item_from_row(row(group, "group", address="crew-1", person_id=None))
    assert item.body == GroupBody(
        text="Meet", group_addresses=("a@example.net",), room_name="Crew 1", closes=True
    )
    assert item.address == "crew-1" and item.person is None and not item.is_reply


@pytest.mark.parametrize(
    ("payload", "kind", "reason"),
    [
        ('{"subject": "cut', "text", "payload is not JSON"),
        ("[1, 2]", "text", "not a JSON object but list"),
        ('{"kind": "text", "text": "x"}', "poll", "payload is a 'text' message in a 'poll' row"),
        ('{"kind": "poll", "text": "x"}', "poll", "body.poll.options: Field required"),
        ('{"text": "x", "optoins": []}', "text", "body.text.optoins: Extra inputs are not"),
        (
            '{"kind": "text", "attachments": [{"name": "a", "mime": "b/c", "data": "@@"}]}',
            "text",
            "body.text.attachments.0.data",
        ),
        ('{"erased": 1}', "group", "its personal data was erased"),
        ('{"text": "x"}', "letter", "unknown kind 'letter'"),
    ],
)
def test_an_unreadable_payload_says_why(payload: str, kind: str, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        read_payload(payload, kind)

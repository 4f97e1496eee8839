"""The Matrix codec against event JSON in the shapes Element, iOS clients and Synapse send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.matrix.codec import (
    mentions_user,
    parse_event,
    poll_content,
    reaction_choice,
    strip_reply_fallback,
    text_content,
)
from gateway.model import Channel, Identity, InboundKind

FIXTURES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "matrix").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture(path: Path) -> None:
    case = _load(path)
    message = parse_event(case["event"], room_id=case["room_id"], bot_user_id=case["bot_user_id"])
    expected = case["expected"]
    if expected is None:
        assert message is None
        return
    assert message is not None
    assert message.kind == InboundKind(expected["kind"])
    assert message.channel == Channel.MATRIX
    assert message.external_id == case["event"]["event_id"]
    assert message.sender == Identity.matrix(case["event"]["sender"])
    assert message.meta["room_id"] == case["room_id"]
    if message.kind == InboundKind.REJECTED:
        assert message.text  # a reason the person can read
    for field in ("text", "choice", "in_reply_to", "replaces"):
        if field in expected:
            assert getattr(message, field) == expected[field], field


def test_fixture_set_covers_every_kind() -> None:
    kinds = {(_load(p)["expected"] or {}).get("kind") for p in FIXTURES}
    assert {"text", "choice", "edit", "redaction", "rejected", None} <= kinds


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"type": "m.room.message"},
        {"type": "m.reaction", "event_id": "$a", "sender": "@x:y", "content": {"m.relates_to": 5}},
        {
            "type": "m.poll.response",
            "event_id": "$a",
            "sender": "@x:y",
            "content": {"m.relates_to": {"event_id": "$p"}, "m.selections": [1, None]},
        },
        {
            "type": "m.room.message",
            "event_id": "$a",
            "sender": "@x:y",
            "content": {"msgtype": "m.text", "body": 42},
        },
        {
            "type": "m.room.message",
            "event_id": "$a",
            "sender": "@x:y",
            "origin_server_ts": "soon",
            "content": {"m.relates_to": {"rel_type": "m.replace"}, "m.new_content": []},
        },
    ],
)
def test_malformed_events_never_raise(event: dict[str, Any]) -> None:
    message = parse_event(event, room_id="!r:y", bot_user_id="@bot:y")
    assert message is None or message.kind == InboundKind.REJECTED


@pytest.mark.parametrize(
    ("key", "choice"),
    [
        ("✅", "yes"),
        ("✔️", "yes"),
        ("✔", "yes"),
        ("👍", "yes"),
        ("👍🏿", "yes"),
        ("☑️", "yes"),
        ("❌", "no"),
        ("✖️", "no"),
        ("👎", "no"),
        ("👎🏻", "no"),
        ("❤️", None),
        ("🎉", None),
    ],
)
def test_reaction_keys(key: str, choice: str | None) -> None:
    assert reaction_choice(key) == choice


def test_reply_fallback_is_removed_only_when_it_is_one() -> None:
    assert strip_reply_fallback("> <@a:b> q\n> more\n\nanswer\n> kept") == "answer\n> kept"
    assert strip_reply_fallback("no quote") == "no quote"


def test_text_content_threads_and_formats() -> None:
    content = text_content("Hi *you*", "<p>Hi <em>you</em></p>", in_reply_to="$e")
    assert content == {
        "msgtype": "m.text",
        "body": "Hi *you*",
        "format": "org.matrix.custom.html",
        "formatted_body": "<p>Hi <em>you</em></p>",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$e"}},
    }
    assert "format" not in text_content("plain")


def test_poll_content_has_stable_unstable_and_text_fallbacks() -> None:
    content = poll_content("Which nights?", ["Fri", "Sat", "Sun"], max_selections=3)
    stable, unstable = content["m.poll"], content["org.matrix.msc3381.poll.start"]
    assert [a["m.id"] for a in stable["answers"]] == ["1", "2", "3"]
    assert [a["id"] for a in unstable["answers"]] == ["1", "2", "3"]
    assert stable["max_selections"] == unstable["max_selections"] == 3
    assert unstable["question"]["org.matrix.msc1767.text"] == "Which nights?"
    assert content["body"] == "Which nights?\n\n1. Fri\n2. Sat\n3. Sun"
    assert content["org.matrix.msc1767.text"] == content["body"]
    assert content["m.text"] == [{"body": content["body"]}]


ASKED_WITH_OPTIONS = (
    '2. What do you eat?\n  1. Everything\n  2. Vegetarian\n  3. Vegan\n(optional: "skip" is fine)'
)


@pytest.mark.parametrize(
    ("text", "question", "body"),
    [
        # The question template already numbers the options: listed once, not again.
        (ASKED_WITH_OPTIONS, '2. What do you eat?\n(optional: "skip" is fine)', ASKED_WITH_OPTIONS),
        # Only some of them (or other wording): the fallback adds the full list.
        (
            "Diet?\n1. Everything",
            "Diet?\n1. Everything",
            "Diet?\n1. Everything\n\n1. Everything\n2. Vegetarian\n3. Vegan",
        ),
        ("Diet?", "Diet?", "Diet?\n\n1. Everything\n2. Vegetarian\n3. Vegan"),
    ],
)
def test_poll_lists_each_option_once(text: str, question: str, body: str) -> None:
    content = poll_content(text, ["Everything", "Vegetarian", "Vegan"])
    assert content["body"] == content["org.matrix.msc1767.text"] == body
    assert content["m.poll"]["question"]["m.text"] == [{"body": question}]
    assert content["org.matrix.msc3381.poll.start"]["question"]["body"] == question


def test_poll_from_the_question_template_shows_options_once() -> None:
    content = poll_content(ASKED_WITH_OPTIONS, ["Everything", "Vegetarian", "Vegan"])
    question = content["m.poll"]["question"]["m.text"][0]["body"]
    for option in ("Everything", "Vegetarian", "Vegan"):
        assert content["body"].count(option) == 1
        assert option not in question  # the poll widget shows them as its answers


def test_vote_on_our_poll_maps_back_to_option_numbers() -> None:
    sent = poll_content("Q", ["a", "b", "c"])
    ids = [a["m.id"] for a in sent["m.poll"]["answers"]]
    vote = {
        "type": "m.poll.response",
        "event_id": "$v",
        "sender": "@p:y",
        "content": {
            "m.relates_to": {"rel_type": "m.reference", "event_id": "$poll"},
            "m.selections": [ids[2]],
        },
    }
    message = parse_event(vote, room_id="!r:y", bot_user_id="@bot:y")
    assert message is not None and message.choice == "3" and message.in_reply_to == "$poll"


def test_mentions() -> None:
    assert mentions_user({"m.mentions": {"user_ids": ["@bot:y"]}, "body": "hi"}, "@bot:y")
    assert mentions_user({"body": "hey @bot:y"}, "@bot:y")
    assert not mentions_user({"body": "hey"}, "@bot:y")

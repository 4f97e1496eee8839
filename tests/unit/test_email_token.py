"""Signed reply-address tokens: round trip, tamper resistance, MTA lower-casing, length."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.channels.email.token import (
    MAX_LOCAL_PART,
    TokenClaims,
    make_token,
    reply_address,
    token_from_address,
    verify_token,
)

SECRET = b"s3cret-key-for-tests"
conversations = st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True)
person_ids = st.integers(min_value=0, max_value=36**13 - 1)


@settings(max_examples=200, deadline=None)
@given(person_ids, conversations)
def test_round_trip_survives_case_changes(person_id: int, conversation: str) -> None:
    token = make_token(SECRET, person_id, conversation)
    claims = TokenClaims(person_id, conversation)
    assert verify_token(SECRET, token) == claims
    assert verify_token(SECRET, token.upper()) == claims
    address = reply_address("camp@example.org", token)
    assert token_from_address(address.upper(), {"camp@example.org"}) == token
    assert len(address.split("@")[0]) <= MAX_LOCAL_PART


def test_format_is_local_part_safe_and_short() -> None:
    token = make_token(SECRET, 123456, "registration")
    assert token == token.lower()
    assert all(c.isalnum() or c in ".-" for c in token)
    assert not token.startswith(".") and ".." not in token
    assert len(token) <= 40


def test_mac_has_at_least_80_bits() -> None:
    mac = make_token(SECRET, 1, "reg").rsplit(".", 1)[1]
    assert len(mac) * 5 >= 80


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"),
        lambda t: "2" + t[1:],
        lambda t: t.replace("reg", "crew"),
        lambda t: t[:-1],
        lambda t: t + "a",
        lambda t: t.replace(".", "-"),
        lambda t: "",
    ],
)
def test_tampered_tokens_are_refused(mangle: object) -> None:
    token = make_token(SECRET, 1, "reg")
    assert callable(mangle)
    assert verify_token(SECRET, mangle(token)) is None


def test_other_secret_is_refused() -> None:
    assert verify_token(b"other", make_token(SECRET, 1, "reg")) is None
    assert verify_token(b"", make_token(SECRET, 1, "reg")) is None


@pytest.mark.parametrize("conversation", ["", "Reg", "a.b", "-x", "x" * 17, "ü"])
def test_bad_conversations_are_refused(conversation: str) -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, 1, conversation)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, -1, "reg")
    with pytest.raises(ValueError):
        make_token(b"", 1, "reg")
    with pytest.raises(ValueError):
        reply_address("not-an-address", "x")
    with pytest.raises(ValueError):
        reply_address("a-very-long-base-local-part-for-the-camp@example.org", "t" * 40)


def test_reply_address_replaces_an_existing_tag() -> None:
    assert reply_address("camp+old@example.org", "new") == "camp+new@example.org"


def test_token_from_address() -> None:
    bases = {"Camp@Example.org"}
    assert token_from_address("<camp+abc.def@example.org>", bases) == "abc.def"
    assert token_from_address("camp@example.org", bases) is None
    assert token_from_address("camp+@example.org", bases) is None
    assert token_from_address("other+abc@example.org", bases) is None
    assert token_from_address("camp+abc@example.net", bases) is None
    assert token_from_address("nonsense", bases) is None

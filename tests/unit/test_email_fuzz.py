"""Mutations of the real fixtures: parse_email never raises and always returns a ParsedEmail.

Every string it returns must also be encodable as UTF-8, since the service stores and
forwards them (undecodable bytes must not leak through as lone surrogates).
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.channels.email.codec import Kind, ParsedEmail, parse_email

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "email").glob("*.eml"))
RAW = [path.read_bytes() for path in FIXTURES]
OWN = frozenset({"camp@example.org"})
CHARSETS = [
    b"utf-8",
    b"iso-8859-1",
    b"shift_jis",
    b"utf-16",
    b"utf-7",
    b"x-garbage",
    b"",
    b'"',
    b"windows-1252",
    b"iso-2022-jp",
    b"ks_c_5601-1987",
    b"utf-8''%ff",
]
_CHARSET = re.compile(rb"charset=\"?[\w.:'%-]*\"?", re.IGNORECASE)
_BOUNDARY = re.compile(rb"boundary=\"?([^\";\r\n]+)\"?", re.IGNORECASE)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(RAW)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                [
                    "flip",
                    "truncate",
                    "dup_header",
                    "boundary",
                    "charset",
                    "huge_line",
                    "insert",
                    "crlf",
                ]
            )
        )
        size = max(len(data), 1)
        if op == "flip" and data:
            for _ in range(draw(st.integers(1, 20))):
                data[draw(st.integers(0, size - 1)) % len(data)] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[draw(st.integers(0, size)) :]
        elif op == "dup_header":
            lines = bytes(data).split(b"\n")
            head = lines[: max(1, lines.index(b"") if b"" in lines else 1)]
            line = draw(st.sampled_from(head))
            data[0:0] = (line + b"\n") * draw(st.integers(1, 50))
        elif op == "boundary":
            match = _BOUNDARY.search(data)
            if match:
                old = match.group(1)
                new = draw(st.sampled_from([b"", b"x", old[:-1], old + b"--", b"--" + old]))
                count = draw(st.integers(1, 3))
                data = bytearray(bytes(data).replace(b"--" + old, b"--" + new, count))
        elif op == "charset":
            charset = draw(st.sampled_from(CHARSETS))
            data = bytearray(_CHARSET.sub(b"charset=" + charset, bytes(data)))
        elif op == "huge_line":
            at = draw(st.integers(0, size)) % (len(data) + 1)
            data[at:at] = draw(st.sampled_from([b"a", b"> ", b"=", b"<div>", b"\xff"])) * 200_000
        elif op == "insert":
            at = draw(st.integers(0, size)) % (len(data) + 1)
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            data = bytearray(bytes(data).replace(b"\r\n", b"\r"))
    return bytes(data)


def _check(parsed: ParsedEmail) -> None:
    assert isinstance(parsed, ParsedEmail)
    assert parsed.kind in get_args(Kind)
    for field in fields(parsed):
        value = getattr(parsed, field.name)
        for text in value if isinstance(value, tuple) else [value]:
            if isinstance(text, str):
                text.encode("utf-8")
    for number, answer in parsed.answers.items():
        assert isinstance(number, int) and answer.encode("utf-8")
    if parsed.kind == "rejected":
        assert parsed.reason


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated(), st.sampled_from([None, 0, 3]))
def test_mutated_fixtures_never_raise(raw: bytes, question_count: int | None) -> None:
    _check(parse_email(raw, own_addresses=OWN, question_count=question_count))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    _check(parse_email(raw, own_addresses=OWN))


def test_deeply_nested_multiparts() -> None:
    depth = 500
    head = b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    body = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    parsed = parse_email(head + body + b"--b500\r\n\r\nhi\r\n", own_addresses=OWN)
    _check(parsed)


def test_many_parts() -> None:
    head = b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    parts = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 5000
    _check(parse_email(head + parts + b"--b--\r\n", own_addresses=OWN))

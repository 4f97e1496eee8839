"""A newcomer's record, made without reading it back, is the one the store would give."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.people import create_person, load_person, new_person_record
from gateway.model import Identity
from gateway.store import open_store


@pytest.mark.parametrize(
    ("identity", "organisers"),
    [
        (Identity.matrix("@ana:hs", "Ana"), frozenset()),
        (Identity.email("bo@example.org"), frozenset({Identity.email("bo@example.org")})),
    ],
)
async def test_a_new_person_record_is_what_load_person_reads(
    tmp_path: Path, identity: Identity, organisers: frozenset[Identity]
) -> None:
    store = await open_store(tmp_path / "g.sqlite3")
    try:
        async with store.transaction() as tx:
            person = await create_person(tx, identity, language="de")
            made = new_person_record(person, identity, "de", organisers)
            assert made == await load_person(tx, person, organisers)
    finally:
        await store.close()

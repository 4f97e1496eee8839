"""The store: PRAGMAs, migrations recorded per component, upgrades and refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.store import open_store
from gateway.store.db import Store, StoreError, _split_sql
from gateway.store.migrations import Migration


async def test_pragmas_and_core_schema(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.sqlite3")
    async with store.read() as tx:
        assert (await tx.one("PRAGMA journal_mode"))[0] == "wal"
        assert (await tx.one("PRAGMA foreign_keys"))[0] == 1
        assert (await tx.one("PRAGMA synchronous"))[0] == 2  # FULL
        versions = await tx.all("SELECT component, version FROM schema_version")
    assert [(r[0], r[1]) for r in versions] == [("core", n) for n in (1, 2, 3, 4, 5)]
    await store.close()


async def test_older_database_is_upgraded_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    v1 = Migration("extra", 1, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);")
    store = await open_store(path, migrations=[v1])
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO notes (body) VALUES ('kept')")
    await store.close()

    v2 = Migration(
        "extra", 2, "notes get a tag", "ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'x';"
    )
    store = await open_store(path, migrations=[v1, v2])
    async with store.read() as tx:
        row = await tx.one("SELECT body, tag FROM notes")
        versions = await tx.all("SELECT version FROM schema_version WHERE component = 'extra'")
    assert tuple(row) == ("kept", "x")
    assert [r[0] for r in versions] == [1, 2]
    await store.close()


async def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    broken = Migration(
        "extra", 1, "half broken", "CREATE TABLE a (id INTEGER);\nCREATE TABLE a (id INTEGER);"
    )
    with pytest.raises(Exception, match="already exists"):
        await open_store(path, migrations=[broken])
    store = await open_store(path)
    async with store.read() as tx:
        assert await tx.one("SELECT name FROM sqlite_master WHERE name = 'a'") is None
        assert await tx.one("SELECT 1 FROM schema_version WHERE component = 'extra'") is None
    await store.close()


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    future = Migration("core", 99, "from the future", "CREATE TABLE future (id INTEGER);")
    store = await open_store(path, migrations=[future])
    await store.close()
    with pytest.raises(StoreError, match="newer than this gateway knows"):
        await open_store(path)


def test_split_sql_keeps_semicolons_inside_strings() -> None:
    statements = _split_sql("-- note\nINSERT INTO t VALUES ('a;b');\nSELECT 1;")
    assert statements == ["INSERT INTO t VALUES ('a;b');", "SELECT 1;"]


async def _store_with_notes(path: Path) -> Store:
    notes = Migration(
        "extra",
        1,
        "notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT UNIQUE);\n"
        "CREATE TABLE tags (note_id INTEGER, tag TEXT);",
    )
    return await open_store(path, migrations=[notes])


async def test_deferred_writes_ride_with_the_next_statement_and_the_commit(
    tmp_path: Path,
) -> None:
    store = await _store_with_notes(tmp_path / "g.sqlite3")
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    hops = 0
    queue_call = store.conn._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await queue_call(fn, *args, **kwargs)

    store.conn._execute = counted  # type: ignore[method-assign]
    async with store.transaction() as tx:
        tx.defer("INSERT INTO notes (body) VALUES ('a')")
        tx.defer_many("INSERT INTO notes (body) VALUES (?)", [("b",), ("c",)])
        # A read sees the writes queued before it.
        assert (await tx.one("SELECT COUNT(*) FROM notes"))[0] == 3
        first = tx.defer_insert(
            "INSERT INTO notes (body) VALUES ('d') ON CONFLICT DO NOTHING",
            (),
            then=[("INSERT INTO tags (note_id, tag) VALUES (last_insert_rowid(), 'new')", ())],
        )
        again = tx.defer_insert(
            "INSERT INTO notes (body) VALUES ('d') ON CONFLICT DO NOTHING",
            (),
            then=[("INSERT INTO tags (note_id, tag) VALUES (last_insert_rowid(), 'dup')", ())],
        )
        assert first.id is None  # not run yet
    # BEGIN with the read, the rest with the COMMIT: two hops for the whole transaction.
    assert hops == 2
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert first.id is not None and again.id is None  # the conflict ignored the second
    async with store.read() as tx:
        tags = await tx.all("SELECT note_id, tag FROM tags")
    assert [tuple(r) for r in tags] == [(first.id, "new")]  # nothing hung off the ignored row
    await store.close()


async def test_a_failing_deferred_write_rolls_back_the_whole_transaction(tmp_path: Path) -> None:
    store = await _store_with_notes(tmp_path / "g.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO notes (body) VALUES ('kept?')")
            tx.defer("INSERT INTO notes (body) VALUES ('twice')")
            tx.defer("INSERT INTO notes (body) VALUES ('twice')")  # fails at COMMIT time
    assert not store.conn.in_transaction
    async with store.transaction() as tx:  # the connection is usable again
        tx.defer("INSERT INTO notes (body) VALUES ('after')")
    async with store.read() as tx:
        bodies = [r[0] for r in await tx.all("SELECT body FROM notes")]
    assert bodies == ["after"]
    await store.close()

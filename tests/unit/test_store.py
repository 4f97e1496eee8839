"""The store: PRAGMAs, migrations recorded per component, upgrades and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store import open_store
from gateway.store.db import StoreError, _split_sql
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

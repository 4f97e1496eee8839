"""The one SQLite connection of the service, its PRAGMAs, migrations and transactions.

Every write goes through `Store.transaction()`, which holds an asyncio lock for the length of
one `BEGIN IMMEDIATE … COMMIT`: aiosqlite runs one connection on one thread, so two coroutines
interleaving statements on it would otherwise mix their transactions.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from gateway.store.migrations import CORE, Migration

Row = sqlite3.Row
Durability = Literal["full", "normal"]


class StoreError(Exception):
    """The database cannot be used by this version of the gateway."""


class StoreMissing(Exception):
    """An organiser command was pointed at a database that does not exist (a mistyped
    `store.path`): creating an empty one would report zero registrations as if true."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no database at {path}")
        self.path = path


class Tx:
    """Statements inside one open transaction.

    Each method is exactly one round trip to aiosqlite's worker thread (a cursor's execute,
    fetch and close would be three): on the engine's hot path those hops, not SQLite, are
    most of the cost. Row counts come from the connection's `total_changes`, which is read
    without a round trip.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return how many rows it inserted, updated or deleted."""
        before = self.conn.total_changes
        await self.conn.execute_fetchall(sql, params)
        return self.conn.total_changes - before

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        """Run an INSERT; return the new row id, or None when a conflict ignored it."""
        before = self.conn.total_changes
        row = await self.conn.execute_insert(sql, params)
        if self.conn.total_changes == before or row is None:
            return None
        return int(row[0])

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, rows)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def has_table(self, name: str) -> bool:
        """Whether a channel's table exists: its migrations run only once it is configured,
        so reports and erasure must cope with a database that never had it."""
        return (
            await self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
            is not None
        )


class Store:
    """The gateway's database. Open it with `open_store`."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One write transaction; rolled back if the body raises."""
        async with self._lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self.conn)
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A consistent read (a deferred transaction that only reads)."""
        async with self._lock:
            await self.conn.execute("BEGIN")
            try:
                yield Tx(self.conn)
            finally:
                await self.conn.rollback()

    async def close(self) -> None:
        await self.conn.close()

    async def migrate(self, migrations: Iterable[Migration]) -> list[Migration]:
        """Apply the migrations not yet applied; return those applied now."""
        applied: list[Migration] = []
        by_component: dict[str, list[Migration]] = {}
        for m in migrations:
            by_component.setdefault(m.component, []).append(m)
        for component, steps in by_component.items():
            steps.sort(key=lambda m: m.version)
            async with self.transaction() as tx:
                row = await tx.one(
                    "SELECT MAX(version) FROM schema_version WHERE component = ?", (component,)
                )
            current = int(row[0]) if row and row[0] is not None else 0
            newest = steps[-1].version
            if current > newest:
                raise StoreError(
                    f"{self.path}: the '{component}' tables are at version {current}, "
                    f"newer than this gateway knows ({newest}); upgrade the gateway"
                )
            for step in steps:
                if step.version <= current:
                    continue
                async with self.transaction() as tx:
                    for statement in _split_sql(step.sql):
                        await tx.execute(statement)
                    await tx.execute(
                        "INSERT INTO schema_version (component, version, description, applied_at)"
                        " VALUES (?, ?, ?, ?)",
                        (component, step.version, step.description, now_iso()),
                    )
                applied.append(step)
        return applied


async def open_store(
    path: str | Path,
    *,
    durability: Durability = "full",
    migrations: Iterable[Migration] = (),
    create: bool = True,
) -> Store:
    """Open (creating if needed) and upgrade the database at `path` (":memory:" for tests).

    WAL lets readers (status, export) run beside the writer; `synchronous=FULL` makes each
    commit survive a power cut, which the inbox-before-IMAP-move promise relies on. "normal"
    only survives a process crash; it is offered for throw-away demo databases.
    """
    if str(path) != ":memory:":
        if not create and not Path(path).is_file():  # noqa: ASYNC240 - one stat, at start
            raise StoreMissing(Path(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in (
        "PRAGMA journal_mode = WAL",
        f"PRAGMA synchronous = {durability.upper()}",
        "PRAGMA foreign_keys = ON",
        "PRAGMA busy_timeout = 5000",
        # Erasing a person (gateway forget) must not leave their data in freed pages.
        "PRAGMA secure_delete = ON",
    ):
        await conn.execute(pragma)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " component TEXT NOT NULL, version INTEGER NOT NULL, description TEXT NOT NULL,"
        " applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"
    )
    store = Store(conn, str(path))
    try:
        await store.migrate([*CORE, *migrations])
    except BaseException:
        await conn.close()
        raise
    return store


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3.complete_statement knows quoting)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")


def dumps(value: Any) -> str:
    """JSON for persisted state: compact, stable key order, dates as ISO strings."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot persist {type(value).__name__}")


async def load_cursor(store: Store, name: str) -> str | None:
    """A channel's saved position (Matrix next_batch, IMAP UID), committed with its messages."""
    async with store.read() as tx:
        row = await tx.one("SELECT value FROM cursors WHERE name = ?", (name,))
    return str(row[0]) if row else None

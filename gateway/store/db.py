"""The one SQLite connection of the service, its PRAGMAs, migrations and transactions.

Every write goes through `Store.transaction()`, which holds an asyncio lock for the length of
one `BEGIN IMMEDIATE … COMMIT`: aiosqlite runs one connection on one thread, so two coroutines
interleaving statements on it would otherwise mix their transactions.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import aiosqlite

from gateway.store.migrations import CORE, Migration

Row = sqlite3.Row
Durability = Literal["full", "normal"]
T = TypeVar("T")


class StoreError(Exception):
    """The database cannot be used by this version of the gateway."""


class StoreMissing(Exception):
    """An organiser command was pointed at a database that does not exist (a mistyped
    `store.path`): creating an empty one would report zero registrations as if true."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no database at {path}")
        self.path = path


class Inserted:
    """The id of a row `Tx.defer_insert` queued: None until it ran, or if a conflict
    ignored it."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: int | None = None


class Tx:
    """Statements inside one open transaction.

    Every call that needs an answer is exactly one round trip to aiosqlite's worker thread:
    on the engine's hot path those hops, not SQLite, are most of the cost. Writes whose
    result nobody needs (`defer`) do not take a hop of their own: they wait in order and run
    on the worker thread just before the next statement, or just before the COMMIT, in the
    same hop. A read therefore always sees every write made before it, and a deferred write
    that fails fails the transaction like any other statement.
    """

    def __init__(self, conn: aiosqlite.Connection, opening: str | None = None) -> None:
        self.conn = conn
        self._pending: list[_Deferred] = []
        if opening is not None:
            # BEGIN, too, rides along with the transaction's first statement.
            self.defer(opening)

    def defer(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Queue a write to run before the next statement or the COMMIT."""
        self._pending.append(functools.partial(_run_one, sql, params))

    def defer_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Queue one statement for several rows (nothing when `rows` is empty)."""
        rows = list(rows)
        if rows:
            self._pending.append(functools.partial(_run_many, sql, rows))

    def defer_insert(
        self,
        sql: str,
        params: Sequence[Any],
        then: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> Inserted:
        """Queue an INSERT that a conflict may ignore; `then` are the writes that hang off
        the new row, run only if it was inserted. The row id is known after the next hop."""
        inserted = Inserted()
        self._pending.append(functools.partial(_run_insert, sql, params, then, inserted))
        return inserted

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return how many rows it inserted, updated or deleted."""
        return await self._hop(_changes, sql, params)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        """Run an INSERT; return the new row id, or None when a conflict ignored it."""
        return await self._hop(_inserted, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._hop(_many, sql, list(rows))

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._hop(_fetchall, sql, params)
        return next(iter(rows), None)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._hop(_fetchall, sql, params))

    async def has_table(self, name: str) -> bool:
        """Whether a channel's table exists: its migrations run only once it is configured,
        so reports and erasure must cope with a database that never had it."""
        return (
            await self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
            is not None
        )

    async def flush(self) -> None:
        """Run the deferred writes now (a savepoint's caller wants their errors inside it)."""
        if self._pending:
            await self._hop(_nothing, "", ())

    def discard_deferred(self) -> None:
        """Drop the deferred writes (the caller rolls back to a savepoint taken before them)."""
        self._pending.clear()

    async def _hop(
        self, run: Callable[[sqlite3.Connection, str, Any], T], sql: str, params: Any
    ) -> T:
        pending, self._pending = self._pending, []
        return await _on_db_thread(self.conn, pending, run, sql, params)


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
            tx = Tx(self.conn, "BEGIN IMMEDIATE")
            try:
                yield tx
                # The writes still deferred and the COMMIT: one hop to the database thread.
                await tx._hop(_commit, "", ())
            except BaseException:
                # Queued after any hop still on its way (a cancelled caller's), so it runs
                # after it; a no-op when BEGIN never ran.
                await self.conn.rollback()
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A consistent read (a deferred transaction that only reads)."""
        async with self._lock:
            try:
                yield Tx(self.conn, "BEGIN")
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


#: A deferred write, run on the database thread with the connection.
_Deferred = Callable[[sqlite3.Connection], None]


async def _on_db_thread(
    conn: aiosqlite.Connection,
    pending: list[_Deferred],
    run: Callable[[sqlite3.Connection, str, Any], T],
    sql: str,
    params: Any,
) -> T:
    """Run the deferred writes, then `run`, in one call on the connection's worker thread.

    aiosqlite has no public way to run a function on its thread; `_execute` is what each of
    its own methods calls (present since its first releases).
    """

    def in_thread() -> T:
        db = conn._conn
        for deferred in pending:
            deferred(db)
        return run(db, sql, params)

    execute = cast(Callable[[Callable[[], T]], Awaitable[T]], conn._execute)
    return await execute(in_thread)


def _run_one(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> None:
    db.execute(sql, params)


def _run_many(sql: str, rows: list[Sequence[Any]], db: sqlite3.Connection) -> None:
    db.executemany(sql, rows)


def _run_insert(
    sql: str,
    params: Sequence[Any],
    then: Sequence[tuple[str, Sequence[Any]]],
    inserted: Inserted,
    db: sqlite3.Connection,
) -> None:
    inserted.id = _inserted(db, sql, params)
    if inserted.id is not None:
        for statement, args in then:
            db.execute(statement, args)


def _changes(db: sqlite3.Connection, sql: str, params: Any) -> int:
    before = db.total_changes
    db.execute(sql, params).fetchall()
    return db.total_changes - before


def _inserted(db: sqlite3.Connection, sql: str, params: Any) -> int | None:
    before = db.total_changes
    db.execute(sql, params)
    if db.total_changes == before:
        return None
    return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])


def _many(db: sqlite3.Connection, sql: str, rows: Any) -> None:
    db.executemany(sql, rows)


def _fetchall(db: sqlite3.Connection, sql: str, params: Any) -> list[Row]:
    return db.execute(sql, params).fetchall()


def _nothing(db: sqlite3.Connection, sql: str, params: Any) -> None:
    return None


def _commit(db: sqlite3.Connection, sql: str, params: Any) -> None:
    db.commit()


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
    return _utc_iso(now or datetime.now(UTC))


@functools.lru_cache(maxsize=256)
def _utc_iso(moment: datetime) -> str:
    """Cached: one message stamps its clock reading on a dozen rows. Equal datetimes are the
    same instant, whose UTC form is the same string, so the cache cannot mix zones."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


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

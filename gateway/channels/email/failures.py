"""Failed attempts per inbound mail, and the quarantine of mail set aside after too many.

Both receiving paths count here, keyed by the mail's dedupe key (its Message-ID, else a hash
of its bytes), which stays the same however often the mail is delivered again: the IMAP
reader fetches it again from the folder, a sending MTA retries it after our 451. The count is
in the store, so a restart does not give a poison mail a fresh start; the listener path
depends on that, since an MTA retries for days.

Only failures that say something about the mail are counted. One that says the gateway cannot
work right now (the database is locked, the disk is full, the committing task was stopped)
says nothing about the mail: it is retried without counting, and so is any failure that cannot
even be counted because the store fails as well.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from gateway.model import Identity, IdentityKind
from gateway.ports import EngineStopped, SetAside
from gateway.store.db import Store, Tx, now_iso
from gateway.store.migrations import Migration

log = logging.getLogger(__name__)

#: Where the listener keeps a mail it set aside (the IMAP reader names its shunt folder).

#: Failure counts of mail that then went through are dropped after this long (a count that
#: never reached the limit is also no longer needed once the sender's MTA gave up).
FORGET_AFTER = timedelta(days=30)

MIGRATIONS: list[Migration] = [
    Migration(
        "email",
        1,
        "failed attempts per inbound mail; mail set aside after too many",
        """
        CREATE TABLE mail_failures (
            key TEXT PRIMARY KEY,
            attempts INTEGER NOT NULL,
            last_error TEXT NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL
        );
        CREATE INDEX mail_failures_last ON mail_failures(last_at);

        -- The raw bytes stay here until an organiser has dealt with the mail: for a mail
        -- the listener accepted, this is the only copy left on our side.
        CREATE TABLE mail_quarantine (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            place TEXT NOT NULL,
            sender TEXT,
            subject TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL,
            reason TEXT NOT NULL,
            raw BLOB NOT NULL,
            set_aside_at TEXT NOT NULL
        );
        """,
    ),
]


def is_transient(exc: BaseException) -> bool:
    """True for failures of the gateway's surroundings rather than of one mail.

    sqlite3.OperationalError is what SQLite raises for a locked or busy database, a full or
    failing disk, a file it cannot open: never for the content of a statement's values (that
    is IntegrityError, or an error in Python before any SQL). OSError covers the disk and the
    network; EngineStopped means the task committing a group was cancelled. Flows are pure,
    so a mail cannot cause an OSError by what it says.
    """
    return isinstance(exc, (sqlite3.OperationalError, OSError, EngineStopped))


class MailFailures:
    """The `mail_failures` and `mail_quarantine` tables (component "email")."""

    def __init__(
        self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    async def count(self, key: str, reason: str) -> tuple[int, bool]:
        """Record one more failed attempt of the mail `key`: (attempts, already set aside).

        A mail set aside earlier can come again: its 250 was lost on the way, or it fails
        before the engine could see it is a duplicate (its parsing is what breaks). It is
        then set aside again at once, which repeats nothing (see `MailIntake.shunt`).
        """
        now = self.clock()
        async with self.store.transaction() as tx:
            earlier = await tx.one("SELECT attempts FROM mail_quarantine WHERE key = ?", (key,))
            if earlier is not None:
                return int(earlier[0]), True
            await tx.execute(
                "DELETE FROM mail_failures WHERE last_at < ?", (now_iso(now - FORGET_AFTER),)
            )
            row = await tx.one(
                "INSERT INTO mail_failures (key, attempts, last_error, first_at, last_at)"
                " VALUES (?, 1, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " attempts = attempts + 1, last_error = excluded.last_error,"
                " last_at = excluded.last_at RETURNING attempts",
                (key, reason, now_iso(now), now_iso(now)),
            )
        assert row is not None
        return int(row[0]), False

    async def forget(self, key: str) -> None:
        """The mail went through after all: its earlier failures no longer matter."""
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM mail_failures WHERE key = ?", (key,))

    async def quarantine(
        self,
        key: str,
        raw: bytes,
        *,
        place: str,
        sender: str | None,
        subject: str,
        attempts: int,
        reason: str,
    ) -> int:
        """Keep the mail's bytes for the organisers; return its quarantine number.

        Setting the same mail aside again (after a crash before its rejection was recorded)
        keeps the first copy and returns its number, so the alert names one entry.
        """
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO mail_quarantine (key, place, sender, subject, attempts, reason,"
                " raw, set_aside_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (key, place, sender, subject[:200], attempts, reason, raw, now_iso(self.clock())),
            )
            await tx.execute("DELETE FROM mail_failures WHERE key = ?", (key,))
            row = await tx.one("SELECT id FROM mail_quarantine WHERE key = ?", (key,))
        assert row is not None
        return int(row[0])


async def set_aside_mail(store: Store, limit: int = 5) -> tuple[int, list[SetAside]]:
    """What `gateway status` shows about this channel (`gateway.ports.SetAsideReader`)."""
    async with store.read() as tx:
        return await quarantined(tx, limit)


async def quarantined(tx: Tx, limit: int = 5) -> tuple[int, list[SetAside]]:
    """How many mails are set aside, and the newest `limit` of them (none without the table:
    a service that never received mail has not created it)."""
    if not await tx.has_table("mail_quarantine"):
        return 0, []
    total = await tx.one("SELECT COUNT(*) FROM mail_quarantine")
    rows = await tx.all(
        "SELECT id, key, place, sender, subject, attempts, reason, set_aside_at"
        " FROM mail_quarantine ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return int(total[0]) if total else 0, [SetAside(*row) for row in rows]


async def quarantined_raw(store: Store, number: int) -> bytes | None:
    """The bytes of quarantined mail `number`, for `gateway mail inspect --quarantined`."""
    async with store.read() as tx:
        if not await tx.has_table("mail_quarantine"):
            return None
        row = await tx.one("SELECT raw FROM mail_quarantine WHERE id = ?", (number,))
    return bytes(row[0]) if row else None


async def forget_identities(tx: Tx, identities: Sequence[Identity], names: Sequence[str]) -> int:
    """The erase hook of the email channel: mail set aside from (or naming) the person, with
    its raw bytes, and failure records keyed by their messages."""
    if not await tx.has_table("mail_quarantine"):
        return 0
    changed = 0
    for address in (i.address for i in identities if i.kind == IdentityKind.EMAIL):
        changed += await tx.execute(
            "DELETE FROM mail_quarantine WHERE lower(sender) = lower(?)"
            " OR instr(lower(CAST(raw AS TEXT)), lower(?)) > 0",
            (address, address),
        )
    return changed

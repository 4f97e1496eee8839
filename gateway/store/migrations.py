"""Ordered, described schema migrations, each applied in its own transaction.

Migrations are grouped by component ("core", and any transport or flow that owns tables) so
that parts of the gateway can add tables without renumbering each other's steps. The version
reached by each component is recorded in `schema_version`; a database made by an older
gateway is upgraded on start, and a database from a newer gateway is refused rather than
misread.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    component: str
    version: int
    description: str
    sql: str


CORE: list[Migration] = [
    Migration(
        "core",
        1,
        "people, identities, flow runs, inbox, outbox, timers, cursors, audit",
        """
        CREATE TABLE people (
            id INTEGER PRIMARY KEY,
            display_name TEXT NOT NULL DEFAULT '',
            language TEXT NOT NULL DEFAULT 'en',
            preferred_channel TEXT,
            created_at TEXT NOT NULL,
            erased_at TEXT
        );
        -- Person 0 stands for "the gathering itself" so gathering-level runs and timers
        -- can use the same foreign keys as personal ones.
        INSERT INTO people (id, display_name, created_at)
            VALUES (0, '', '1970-01-01T00:00:00+00:00');

        CREATE TABLE identities (
            id INTEGER PRIMARY KEY,
            person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            address TEXT NOT NULL,
            verified INTEGER NOT NULL DEFAULT 1,
            failures INTEGER NOT NULL DEFAULT 0,
            UNIQUE (kind, address)
        );
        CREATE INDEX identities_person ON identities(person_id);

        CREATE TABLE flow_runs (
            id INTEGER PRIMARY KEY,
            gathering TEXT NOT NULL,
            flow TEXT NOT NULL,
            person_id INTEGER NOT NULL REFERENCES people(id),
            status TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (gathering, flow, person_id)
        );
        CREATE INDEX flow_runs_person ON flow_runs(person_id);

        CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            external_id TEXT NOT NULL,
            person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
            kind TEXT NOT NULL,
            received_at TEXT NOT NULL,
            processed_at TEXT NOT NULL,
            gathering TEXT,
            flow TEXT,
            outcome TEXT NOT NULL DEFAULT 'applied',
            detail TEXT NOT NULL DEFAULT '',
            UNIQUE (channel, external_id)
        );

        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
            gathering TEXT,
            flow TEXT,
            channel TEXT NOT NULL,
            address TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            external_id TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
        CREATE INDEX outbox_external ON outbox(external_id);
        CREATE INDEX outbox_conversation ON outbox(person_id, gathering, flow);
        CREATE INDEX outbox_recipient ON outbox(channel, address, status);

        CREATE TABLE timers (
            id INTEGER PRIMARY KEY,
            gathering TEXT NOT NULL,
            flow TEXT NOT NULL,
            person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            due_at TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}',
            UNIQUE (gathering, flow, person_id, name)
        );
        CREATE INDEX timers_due ON timers(due_at);

        CREATE TABLE cursors (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            person_id INTEGER REFERENCES people(id) ON DELETE CASCADE,
            at TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out', 'note')),
            channel TEXT NOT NULL,
            gathering TEXT,
            flow TEXT,
            summary TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX audit_person ON audit(person_id);

        -- Calendar invites we sent, so an iMIP REPLY (which carries only the UID) finds its
        -- run, and so a REPLY to an older SEQUENCE can be recognised as stale.
        CREATE TABLE invites (
            uid TEXT NOT NULL,
            gathering TEXT NOT NULL,
            flow TEXT NOT NULL,
            person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            sequence INTEGER NOT NULL,
            method TEXT NOT NULL,
            partstat TEXT NOT NULL DEFAULT 'NEEDS-ACTION',
            updated_at TEXT NOT NULL,
            PRIMARY KEY (uid, person_id)
        );
        """,
    ),
    Migration(
        "core",
        2,
        "inbox by person and time, for the loop guard",
        """
        CREATE INDEX inbox_person_time ON inbox(person_id, processed_at);
        """,
    ),
    Migration(
        "core",
        3,
        "jobs: CPU-heavy work a step asked for, run beside the engine",
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            gathering TEXT NOT NULL,
            flow TEXT NOT NULL,
            person_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX jobs_pending ON jobs(status, id);
        """,
    ),
    Migration(
        "core",
        4,
        "addresses that proved they read our mail (unlimited mail to them)",
        """
        CREATE TABLE proven_addresses (
            channel TEXT NOT NULL,
            address TEXT NOT NULL,
            proven_at TEXT NOT NULL,
            PRIMARY KEY (channel, address)
        );
        """,
    ),
    Migration(
        "core",
        5,
        "jobs answer the caller of the command that asked for them",
        "ALTER TABLE jobs ADD COLUMN caller TEXT;",
    ),
]

"""The statements the engine reads and writes a message with, and the transport cursors.

Kept apart from the engine's logic so that the logic reads as steps and the SQL can be
checked (and tuned: every statement that returns something is one round trip to the database
thread; the writes are deferred to ride along with the next one, see `Tx.defer`) in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from flows.base import Flow, RunView
from gateway.core.people import PERSON_COLUMNS
from gateway.model import (
    GATHERING_SUBJECT,
    Caller,
    Channel,
    InboundKind,
    InboundMessage,
    PersonId,
    RunJob,
    SetTimer,
    Target,
)
from gateway.store.db import Tx, dumps, now_iso

FIRST_READ = (
    "SELECT EXISTS (SELECT 1 FROM inbox WHERE channel = ? AND external_id = ?) AS seen,"
    " (SELECT COUNT(*) FROM inbox WHERE person_id = p.id AND processed_at >= ?) AS recent,"
    f" {PERSON_COLUMNS},"
    " (SELECT json_group_array(json_array(r.gathering, r.flow, r.person_id, r.status, r.state))"
    "  FROM (SELECT * FROM flow_runs WHERE person_id = p.id OR (person_id = 0"
    "        AND (gathering, flow) IN (SELECT gathering, flow FROM flow_runs"
    "                                  WHERE person_id = p.id))"
    "        ORDER BY updated_at DESC, id DESC) AS r) AS runs"
    " FROM (SELECT 1) LEFT JOIN people p ON p.id = COALESCE("
    "  (SELECT person_id FROM identities WHERE kind = ? AND address = ?), ?)"
)


UPSERT_RUN = (
    "INSERT INTO flow_runs (gathering, flow, person_id, status, state, created_at, updated_at)"
    " VALUES (?, ?, ?, COALESCE(?, ''), COALESCE(?, '{}'), ?, ?)"
    " ON CONFLICT (gathering, flow, person_id) DO UPDATE SET"
    " status = COALESCE(?, status), state = COALESCE(?, state), updated_at = excluded.updated_at"
)


def upsert_params(
    target: Target, encoded: str | None, status: str | None, stamp: str
) -> tuple[object, ...]:
    """The parameters of UPSERT_RUN for a state already encoded (gateway.core.states)."""
    return (
        target.gathering,
        target.flow,
        target.person,
        status,
        encoded,
        stamp,
        stamp,
        status,
        encoded,
    )


async def load_peers(tx: Tx, target: Target, flow: Flow) -> dict[str, dict[PersonId, RunView]]:
    peers: dict[str, dict[PersonId, RunView]] = {}
    for name in getattr(flow, "reads", ()):
        rows = await tx.all(
            "SELECT r.person_id, r.status, r.state, p.display_name FROM flow_runs r"
            " JOIN people p ON p.id = r.person_id"
            " WHERE r.gathering = ? AND r.flow = ? AND r.person_id != 0",
            (target.gathering, name),
        )
        peers[name] = {
            PersonId(r["person_id"]): RunView(
                PersonId(r["person_id"]), r["status"], json.loads(r["state"]), r["display_name"]
            )
            for r in rows
        }
    return peers


async def load_stored_state(tx: Tx, target: Target) -> str | None:
    """One run's stored state, as JSON (None when the run does not exist yet)."""
    row = await tx.one(
        "SELECT state FROM flow_runs WHERE gathering = ? AND flow = ? AND person_id = ?",
        (target.gathering, target.flow, target.person),
    )
    return str(row["state"]) if row else None


async def load_shared_of(tx: Tx, target: Target, flow: Flow) -> dict[str, dict[str, Any]]:
    """The gathering-level states of the flows `flow` reads (e.g. the approved crews), as
    plain JSON: a flow never sees another flow's model."""
    shared: dict[str, dict[str, Any]] = {}
    for name in getattr(flow, "reads", ()):
        stored = await load_stored_state(tx, Target(target.gathering, name, GATHERING_SUBJECT))
        shared[name] = json.loads(stored) if stored is not None else {}
    return shared


async def claim_timer(tx: Tx, message: InboundMessage) -> bool:
    """Delete the timer a TICK comes from before its step runs (the step may set it again).

    False when the timer was cancelled or moved since it was read: the tick is stale.
    """
    deleted = await tx.execute(
        "DELETE FROM timers WHERE id = ? AND due_at = ?",
        (message.payload["timer_id"], message.payload["due_at"]),
    )
    return deleted == 1


async def save_cursor(tx: Tx, name: str, value: str) -> None:
    tx.defer(
        "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at",
        (name, value, now_iso()),
    )


AUDIT_INSERT = (
    "INSERT INTO audit (person_id, at, direction, channel, gathering, flow, summary)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def audit_row(
    person: PersonId,
    direction: str,
    channel: Channel,
    target: Target | None,
    summary: str,
    now: datetime,
) -> tuple[object, ...]:
    return (
        person,
        now_iso(now),
        direction,
        channel.value,
        target.gathering if target else None,
        target.flow if target else None,
        summary,
    )


def summarise(message: InboundMessage, *, with_text: bool = True) -> str:
    """One audit line for an inbound message; without its text when `with_text` is False."""
    if message.kind == InboundKind.CALENDAR_REPLY and message.calendar:
        return f"calendar reply {message.calendar.partstat}"
    if not with_text:
        return f"{message.kind.value} ({len(message.answers) or 1} answer(s), text not logged)"
    if message.choice is not None:
        return f"{message.kind.value}: option {message.choice}"
    text = " ".join(message.text.split())
    return f"{message.kind.value}: {text[:200]}"


async def record_inbox(
    tx: Tx,
    message: InboundMessage,
    person: PersonId | None,
    now: datetime,
    target: Target | None,
    outcome: str,
    detail: str,
) -> None:
    """The inbox row: written in the message's own transaction, it is what makes a
    redelivered message a duplicate."""
    tx.defer(
        "INSERT INTO inbox (channel, external_id, person_id, kind, received_at, processed_at,"
        " gathering, flow, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message.channel.value,
            message.external_id,
            person if person else None,
            message.kind.value,
            now_iso(message.received_at),
            now_iso(now),
            target.gathering if target else None,
            target.flow if target else None,
            outcome,
            detail,
        ),
    )


async def write_timers(
    tx: Tx, target: Target, cancelled: Iterable[str], timers: Iterable[SetTimer]
) -> None:
    """Apply a step's timer changes; setting a timer again moves it (one row per name)."""
    for name in cancelled:
        tx.defer(
            "DELETE FROM timers WHERE gathering = ? AND flow = ? AND person_id = ? AND name = ?",
            (target.gathering, target.flow, target.person, name),
        )
    for timer in timers:
        person = timer.person if timer.person != GATHERING_SUBJECT else target.person
        tx.defer(
            "INSERT INTO timers (gathering, flow, person_id, name, due_at, payload)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (gathering, flow, person_id, name)"
            " DO UPDATE SET due_at = excluded.due_at, payload = excluded.payload",
            (
                target.gathering,
                target.flow,
                person,
                timer.name,
                now_iso(timer.due_at),
                dumps(dict(timer.payload)),
            ),
        )


async def add_jobs(
    tx: Tx, target: Target, jobs: Iterable[RunJob], now: datetime, caller: Caller | None
) -> None:
    """Queue a step's jobs for the job runner (gateway/core/jobs.py); their results answer
    the caller of the COMMAND that asked for them."""
    who = dumps({"channel": caller.channel.value, "address": caller.address}) if caller else None
    tx.defer_many(
        "INSERT INTO jobs (gathering, flow, person_id, name, payload, created_at, caller)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                target.gathering,
                target.flow,
                target.person,
                job.name,
                dumps(dict(job.payload)),
                now_iso(now),
                who,
            )
            for job in jobs
        ],
    )


async def finish_job(tx: Tx, job_id: int, now: datetime) -> None:
    """Done; its input (people's answers, origins) is not kept once its result is applied."""
    tx.defer(
        "UPDATE jobs SET status = 'done', payload = '{}', finished_at = ? WHERE id = ?",
        (now_iso(now), job_id),
    )

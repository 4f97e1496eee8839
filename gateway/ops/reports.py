"""What organisers read and do with the data: status counts, CSV export, erasing a person.

Shared by the `gateway` command and the organisers' Matrix room, so both say the same thing.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flows.config import GatheringConfig
from flows.registration.state import RegistrationRun
from gateway.core.people import find_person
from gateway.model import Identity, PersonId
from gateway.ports import QUARANTINE, SetAside, SetAsideReader
from gateway.store.db import Store

#: Registration statuses in the order organisers read them.
STATUSES = ("registered", "offered", "waiting", "confirming", "in_progress", "cancelled")


@dataclass(frozen=True, slots=True)
class GatheringStatus:
    slug: str
    name: str
    capacity: int
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class StatusReport:
    gatherings: list[GatheringStatus]
    outbox: Mapping[str, int]
    #: Messages that could not be delivered: (channel, address, error) of the newest few.
    dead: list[tuple[str, str, str]]
    #: Inbound mail set aside after failing again and again: how many, and the newest few.
    set_aside_total: int = 0
    set_aside: tuple[SetAside, ...] = ()
    #: How long the oldest unsent message has waited, and the newest retry's error.
    oldest_pending: timedelta | None = None
    last_error: str = ""


async def status_report(
    store: Store,
    gatherings: Mapping[str, GatheringConfig],
    now: datetime | None = None,
    set_aside: SetAsideReader | None = None,
) -> StatusReport:
    async with store.read() as tx:
        rows = await tx.all(
            "SELECT gathering, status, COUNT(*) AS n FROM flow_runs"
            " WHERE flow = 'registration' AND person_id != 0 GROUP BY gathering, status"
        )
        outbox_rows = await tx.all("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        dead_rows = await tx.all(
            "SELECT channel, address, last_error FROM outbox WHERE status = 'dead'"
            " ORDER BY id DESC LIMIT 5"
        )
        waiting = await tx.one(
            "SELECT MIN(created_at) AS oldest,"
            " (SELECT last_error FROM outbox WHERE status IN ('pending', 'sending')"
            "  AND last_error != '' ORDER BY id DESC LIMIT 1) AS error"
            " FROM outbox WHERE status IN ('pending', 'sending')"
        )
    set_aside_total, newest = await set_aside(store) if set_aside else (0, [])
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        counts.setdefault(row["gathering"], Counter())[row["status"]] = row["n"]
    report = [
        GatheringStatus(g.slug, g.name, g.capacity, dict(counts.get(g.slug, Counter())))
        for g in gatherings.values()
    ]
    outbox = {s: 0 for s in ("pending", "sending", "sent", "dead")}
    outbox.update({row["status"]: row["n"] for row in outbox_rows})
    dead = [(r["channel"], r["address"], r["last_error"]) for r in dead_rows]
    oldest = (
        (now or datetime.now(UTC)) - datetime.fromisoformat(waiting["oldest"])
        if waiting and waiting["oldest"]
        else None
    )
    error = str(waiting["error"] or "") if waiting else ""
    return StatusReport(report, outbox, dead, set_aside_total, tuple(newest), oldest, error)


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


def format_status(report: StatusReport) -> str:
    """A plain table that reads the same in a terminal and in a chat message."""
    header = ["gathering", "capacity", *STATUSES]
    table = [header] + [
        [g.slug, str(g.capacity), *(str(g.counts.get(s, 0)) for s in STATUSES)]
        for g in report.gatherings
    ]
    lines = [
        format_table(table),
        "",
        "outbox: " + ", ".join(f"{k} {v}" for k, v in report.outbox.items()),
    ]
    if report.oldest_pending is not None:
        lines.append(f"  oldest unsent: waiting {_age(report.oldest_pending)}")
    if report.last_error:
        lines.append(f"  last error: {report.last_error[:200]}")
    for channel, address, error in report.dead:
        lines.append(f"  dead: {channel} {address}: {error}")
    if report.outbox.get("dead"):
        lines.append("  (send dead messages again with: gateway outbox retry)")
    if report.set_aside_total:
        lines += [
            "",
            f"mail set aside, unanswered: {report.set_aside_total}"
            " (see one with: gateway mail inspect --quarantined NUMBER)",
        ]
        for mail in report.set_aside:
            where = "" if mail.place == QUARANTINE else f", also in folder {mail.place}"
            lines.append(
                f"  #{mail.id} {mail.set_aside_at[:16]} from {mail.sender or '?'}"
                f' "{mail.subject}"{where}: {mail.reason[:120]}'
            )
    return "\n".join(lines)


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


async def export_csv(store: Store, gathering: GatheringConfig) -> str:
    """One row per person who started registering: status, channel, attendance, answers.

    Columns for answers are the gathering's current questions, named `answer:<id>` so that a
    question called `name` or `language` cannot be confused with the person's own columns;
    answers to removed questions are left out of the export. Text people typed is made safe
    for spreadsheets (`_cell`).
    """
    async with store.read() as tx:
        rows = await tx.all(
            "SELECT r.person_id, r.status, r.state, r.updated_at, p.display_name,"
            " p.preferred_channel, p.language,"
            " (SELECT address FROM identities i WHERE i.person_id = p.id AND i.kind = 'email'"
            "  ORDER BY i.id LIMIT 1) AS email,"
            " (SELECT address FROM identities i WHERE i.person_id = p.id AND i.kind = 'matrix'"
            "  ORDER BY i.id LIMIT 1) AS matrix"
            " FROM flow_runs r JOIN people p ON p.id = r.person_id"
            " WHERE r.gathering = ? AND r.flow = 'registration' AND r.person_id != 0"
            " AND p.erased_at IS NULL ORDER BY r.person_id",
            (gathering.slug,),
        )
    questions = [q.id for q in gathering.registration.questions]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "person",
            "name",
            "status",
            "attendance",
            "channel",
            "email",
            "matrix",
            "language",
            "updated_at",
            *(f"answer:{q}" for q in questions),
        ]
    )
    for row in rows:
        state = RegistrationRun.from_stored(row["state"])
        answers = state.answers
        writer.writerow(
            [
                row["person_id"],
                _cell(row["display_name"]),
                row["status"],
                state.attendance.value if state.attendance else "",
                row["preferred_channel"] or "",
                _cell(row["email"]),
                # Every Matrix id starts with @; the homeserver allows no formula in the rest.
                row["matrix"] or "",
                row["language"],
                row["updated_at"],
                *(_cell(answers.get(q)) for q in questions),
            ]
        )
    return out.getvalue()


#: A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
#: (OWASP "CSV injection"); a leading apostrophe makes it text and is not displayed.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """One cell of text a person typed, safe to open in a spreadsheet."""
    if value is None:
        return ""
    text = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


async def resolve_person(store: Store, ref: str) -> PersonId | None:
    """A person by id ("42"), email address or Matrix id."""
    if ref.isdigit():
        return PersonId(int(ref))
    identity = Identity.matrix(ref) if ref.startswith("@") else Identity.email(ref)
    async with store.read() as tx:
        return await find_person(tx, identity)

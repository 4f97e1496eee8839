"""Plain-text views of the call roster, for the terminal and the chat room (a proposal's
is `flows.crews.describe`, which the flow replies with).

Everything is rendered from the stored flow state (plus current names and answers).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence

from flows.config import GatheringConfig
from flows.crews.describe import members
from flows.crews.state import CrewsShared
from gateway.ops.crews.inputs import Registrant
from gateway.ops.reports import format_table


def roster_rows(state: CrewsShared, people: Sequence[Registrant]) -> list[list[str]]:
    """Header plus one row per approved member: crew, person, name, call answer."""
    approved = state.approved
    if approved is None:
        return [["crew", "person", "name", "call"]]
    names = {r.key: r.name for r in people}
    rows = [["crew", "person", "name", "call"]]
    for c, crew in enumerate(members(approved.assignment)):
        for key in crew:
            rows.append(
                [
                    str(c + 1),
                    key,
                    names.get(key, f"#{key}"),
                    state.calls.get(key, "NEEDS-ACTION" if approved.announced else ""),
                ]
            )
    return rows


def describe_roster(
    gathering: GatheringConfig, state: CrewsShared, people: Sequence[Registrant]
) -> str:
    approved = state.approved
    if approved is None:
        return f"{gathering.name}: no crews approved yet."
    rows = roster_rows(state, people)
    answers = Counter(row[3] for row in rows[1:])
    head = (
        f"{gathering.name}, round {approved.round}: {len(rows) - 1} people in "
        f"{approved.crews} crews" + ("" if approved.announced else " (not announced yet)")
    )
    summary = ", ".join(f"{k.lower()} {v}" for k, v in sorted(answers.items()) if k)
    return "\n".join([head, format_table(rows)] + ([f"crew calls: {summary}"] if summary else []))


def roster_csv(state: CrewsShared, people: Sequence[Registrant]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(roster_rows(state, people))
    return out.getvalue()

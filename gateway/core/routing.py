"""Which flow run an inbound message belongs to.

In order: an explicit target (a timer, a command, a verified email token); the invite UID of
a calendar reply; the message of ours it answers; a flow that owns the command word the
message starts with ("link …", gateway/core/command_routing.py); the person's runs, most recent
first, the first whose flow wants the message; otherwise a new conversation with the
default flow of the gathering the person names (or the only one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flows.base import Flow
from flows.config import GatheringConfig
from gateway.core.command_routing import command_target
from gateway.model import GATHERING_SUBJECT, InboundKind, InboundMessage, PersonId, Target
from gateway.store.db import Tx


@dataclass(frozen=True, slots=True)
class RouteDecision:
    target: Target | None
    label: str = "applied"
    detail: str = ""
    #: When there is no target: a message to send instead, to `notify` (default: the sender).
    reply_template: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    notify: PersonId | None = None


class RunCache:
    """The flow runs one message's transaction has read, kept current as steps write them.

    The engine's first query reads all runs of the sender and the gathering-level runs (person
    0) of the flows they are in — not every gathering's shared state on every message; a step
    of another flow reads its gathering-level run here, once per transaction. Only people
    whose runs were read completely, and runs read or written here, are answered from it.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str, int], tuple[str, str]] = {}
        self._order: list[tuple[str, str, int]] = []
        self._complete: set[int] = set()
        #: Runs known here, present or absent (absent ones have no entry in `_runs`).
        self._known: set[tuple[str, str, int]] = set()

    def prime(self, person: PersonId | None, runs: list[list[Any]]) -> None:
        """Take the runs read by the engine's first query, (gathering, flow, person, status,
        state) in order of recent activity: all of `person`'s, and the gathering-level runs
        of the same flows (so absent ones are known to be absent)."""
        self._order = [(g, f, p) for g, f, p, _, _ in runs]
        for gathering, flow, subject, status, state in runs:
            self._runs[(gathering, flow, subject)] = (status, state)
            self._known.add((gathering, flow, GATHERING_SUBJECT))
        if person is not None:
            self._complete.add(person)

    async def recent(self, tx: Tx, person: PersonId) -> list[tuple[str, str, str]]:
        """(gathering, flow, status) of the person's runs, most recently active first."""
        if person not in self._complete:
            rows = await tx.all(
                "SELECT gathering, flow, person_id, status, state FROM flow_runs"
                " WHERE person_id = ? OR (person_id = 0 AND (gathering, flow) IN"
                "  (SELECT gathering, flow FROM flow_runs WHERE person_id = ?))"
                " ORDER BY updated_at DESC, id DESC",
                (person, person),
            )
            self.prime(person, [list(row) for row in rows])
        return [(g, f, self._runs[(g, f, p)][0]) for g, f, p in self._order if p == person]

    async def states(self, tx: Tx, target: Target) -> dict[int, str]:
        """The stored states (JSON) of the target's run and of its gathering-level run
        (absent: no key); the engine validates them into the flow's models."""
        people = (target.person, GATHERING_SUBJECT)
        missing = [p for p in people if not self._has(target.gathering, target.flow, p)]
        if missing:
            marks = ", ".join("?" * len(missing))
            rows = await tx.all(
                "SELECT person_id, status, state FROM flow_runs"
                f" WHERE gathering = ? AND flow = ? AND person_id IN ({marks})",
                (target.gathering, target.flow, *missing),
            )
            for row in rows:
                self._runs[(target.gathering, target.flow, row[0])] = (row[1], row[2])
            self._known.update((target.gathering, target.flow, p) for p in missing)
        found = {p: self._runs.get((target.gathering, target.flow, p)) for p in people}
        return {p: run[1] for p, run in found.items() if run is not None}

    def _has(self, gathering: str, flow: str, person: int) -> bool:
        return person in self._complete or (gathering, flow, person) in self._known

    def remember(self, target: Target, encoded: str | None, status: str | None) -> None:
        """A run a step wrote: its state as stored (JSON), None when only its status changed."""
        key = (target.gathering, target.flow, target.person)
        if encoded is None and not self._has(*key):
            return  # never read here, so its state is unknown: the next read goes to the database
        self._known.add(key)
        old_status, old_state = self._runs.get(key, ("", "{}"))
        self._runs[key] = (
            status if status is not None else old_status,
            encoded if encoded is not None else old_state,
        )


async def route(
    tx: Tx,
    message: InboundMessage,
    person: PersonId | None,
    gatherings: Mapping[str, GatheringConfig],
    flows: Mapping[str, Flow],
    default_flow: str,
    runs: RunCache,
) -> RouteDecision:
    if message.target is not None:
        return _explicit(message, person, gatherings, flows)
    if person is None:
        return RouteDecision(None, "ignored", "no sender and no target")
    if message.kind == InboundKind.CALENDAR_REPLY and message.calendar is not None:
        return await _calendar(tx, message, person)
    if message.in_reply_to:
        # A reply (or reaction) to our message to this person, or to a group message (a crew
        # introduction): either way it belongs to the sender's own run of that flow.
        row = await tx.one(
            "SELECT gathering, flow FROM outbox WHERE external_id = ?"
            " AND (person_id = ? OR (person_id IS NULL AND kind = 'group'))",
            (message.in_reply_to, person),
        )
        if row and row["gathering"] in gatherings and row["flow"] in flows:
            return RouteDecision(
                Target(row["gathering"], row["flow"], person), detail="in-reply-to"
            )
    live = [r for r in await runs.recent(tx, person) if r[0] in gatherings and r[1] in flows]
    command = command_target(message, person, gatherings, flows, live)
    if command is not None:
        return RouteDecision(command, detail="command word")
    for gathering, flow, status in live:
        if flows[flow].wants(message, status):
            return RouteDecision(Target(gathering, flow, person), detail="recent run")
    return _new_conversation(message, person, gatherings, flows, default_flow, live)


def _explicit(
    message: InboundMessage,
    person: PersonId | None,
    gatherings: Mapping[str, GatheringConfig],
    flows: Mapping[str, Flow],
) -> RouteDecision:
    target = message.target
    assert target is not None
    if target.gathering not in gatherings or target.flow not in flows:
        return RouteDecision(None, "rejected", f"unknown run {target.gathering}/{target.flow}")
    sent_by_someone_else = (
        message.sender is not None
        and target.person != GATHERING_SUBJECT
        and person != target.person
    )
    if sent_by_someone_else:
        sender = message.sender.address if message.sender else "?"
        # A reply carrying another person's token, from an address that person does not own
        # (a forwarded mail, a shared mailbox): apply nothing, ask the owner.
        return RouteDecision(
            None,
            "held",
            f"token of person {target.person} used by {sender}",
            reply_template="core/held",
            context={
                "sender": message.sender.address if message.sender else "",
                "text": message.text[:500],
            },
            notify=target.person,
        )
    return RouteDecision(target, detail=message.kind.value)


async def _calendar(tx: Tx, message: InboundMessage, person: PersonId) -> RouteDecision:
    assert message.calendar is not None
    rows = await tx.all(
        "SELECT gathering, flow, person_id FROM invites WHERE uid = ?", (message.calendar.uid,)
    )
    mine = [r for r in rows if r["person_id"] == person]
    if not mine and message.calendar.attendee:
        # Replies sent from an alias: match the ATTENDEE address of the reply instead.
        found = await tx.one(
            "SELECT person_id FROM identities WHERE kind = 'email' AND address = ?",
            (message.calendar.attendee.lower(),),
        )
        mine = [r for r in rows if found and r["person_id"] == found[0]]
    if not mine:
        return RouteDecision(
            None, "ignored", f"calendar reply for unknown invite {message.calendar.uid}"
        )
    row = mine[0]
    return RouteDecision(
        Target(row["gathering"], row["flow"], PersonId(row["person_id"])), detail="invite uid"
    )


def _new_conversation(
    message: InboundMessage,
    person: PersonId,
    gatherings: Mapping[str, GatheringConfig],
    flows: Mapping[str, Flow],
    default_flow: str,
    live: list[tuple[str, str, str]],
) -> RouteDecision:
    if default_flow not in flows or not gatherings:
        return RouteDecision(None, "ignored", "no gathering accepts new conversations")
    candidates = list(gatherings.values())
    text = message.text.lower()
    named = [g for g in candidates if g.slug in text or g.name.lower() in text]
    if len(named) == 1:
        chosen = named[0]
    elif len(candidates) == 1:
        chosen = candidates[0]
    elif live:
        chosen = gatherings[live[0][0]]
    else:
        return RouteDecision(
            None,
            "asked",
            "several gatherings: asked which one",
            reply_template="core/which_gathering",
            context={"gatherings": [{"slug": g.slug, "name": g.name} for g in candidates]},
        )
    return RouteDecision(Target(chosen.slug, default_flow, person), detail="new conversation")


async def replied_questions(tx: Tx, in_reply_to: str, person: PersonId) -> tuple[str, ...] | None:
    """The question ids of our message to `person` that `in_reply_to` names; None when we
    sent `person` no such message."""
    row = await tx.one(
        "SELECT json_extract(payload, '$.questions') FROM outbox"
        " WHERE external_id = ? AND person_id = ?",
        (in_reply_to, person),
    )
    if row is None:
        return None
    return tuple(str(q) for q in json.loads(row[0] or "[]"))

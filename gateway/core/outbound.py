"""Turning a flow's `Outgoing` requests into rendered, addressed outbox rows.

Runs inside the engine's transaction. The idempotency key of each row is derived from the
inbound message that caused it and its position in the step's output, so re-running the same
step after a crash (the transaction rolled back) produces the same keys, and the transports
derive their Matrix txn_id / email Message-ID from that key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from flows.config import GatheringConfig
from gateway.core.payload import RowPayload
from gateway.core.people import CHANNEL_OF_KIND, PersonRecord, Reach, load_person
from gateway.core.records import AUDIT_INSERT
from gateway.core.render import Rendered, Renderer, TemplateError
from gateway.core.unsolicited import over_limit
from gateway.model import (
    GATHERING_SUBJECT,
    MAX_ATTACHMENT_BYTES,
    Channel,
    GroupBody,
    Identity,
    InboundMessage,
    OutboxBody,
    Outgoing,
    OutKind,
    PersonId,
    PollBody,
    Target,
    TextBody,
)
from gateway.store.db import Inserted, Tx, now_iso

log = logging.getLogger(__name__)


class Enqueuer:
    def __init__(
        self,
        renderer: Renderer,
        organisers: frozenset[Identity],
        token_maker: Callable[[PersonId, str], str] | None,
        unproven_daily_limit: int | None = None,
    ) -> None:
        self.renderer = renderer
        self.organisers = organisers
        self.token_maker = token_maker
        #: Mail per day to an address that has not proven itself (gateway/core/unsolicited.py).
        self.unproven_daily_limit = unproven_daily_limit
        self._organiser_mail = frozenset(
            o.address.lower() for o in organisers if CHANNEL_OF_KIND[o.kind] == Channel.EMAIL
        )

    def organiser_alerts(self, template: str, context: Mapping[str, Any]) -> list[Outgoing]:
        """One message per organiser identity (organisers need not be participants)."""
        return [
            Outgoing(
                to=GATHERING_SUBJECT,
                template=template,
                context=dict(context),
                is_reply=False,
                channel=CHANNEL_OF_KIND[o.kind],
                address=o.address,
            )
            for o in sorted(self.organisers, key=lambda i: (i.kind.value, i.address))
        ]

    async def enqueue(
        self,
        tx: Tx,
        sends: Sequence[Outgoing],
        *,
        target: Target | None,
        gathering: GatheringConfig | None,
        cause: InboundMessage | None,
        index_base: int,
        now: datetime,
        key_prefix: str | None = None,
        people: dict[PersonId, PersonRecord] | None = None,
        sender: PersonId | None = None,
        audit: list[tuple[object, ...]] | None = None,
    ) -> list[Inserted]:
        """Queue `sends`; `people` caches person records for the transaction, `sender` is
        the person who wrote `cause` (their messages get In-Reply-To it).

        The rows are deferred writes (`Tx.defer_insert`): their ids are known once the
        transaction's next statement or its COMMIT ran; an id stays None when the row's
        idempotency key was already queued (then nothing of it is written).
        """
        prefix = key_prefix or (f"{cause.channel.value}:{cause.external_id}" if cause else "")
        people = {} if people is None else people
        for out in sends:
            check_attachments(out)
        ids: list[Inserted] = []
        for offset, out in enumerate(sends):
            key = f"{prefix}#{index_base + offset}"
            for n, (reach, person, language) in enumerate(
                await self._recipients(tx, out, gathering, people)
            ):
                row_key = key if n == 0 else f"{key}.{n}"
                row = await self._insert(
                    tx,
                    out,
                    reach,
                    person,
                    language,
                    row_key,
                    target,
                    gathering,
                    cause,
                    now,
                    people,
                    sender,
                    audit,
                )
                if row is not None:
                    ids.append(row)
        return ids

    async def _recipients(
        self,
        tx: Tx,
        out: Outgoing,
        gathering: GatheringConfig | None,
        people: dict[PersonId, PersonRecord],
    ) -> list[tuple[Reach, PersonId | None, str]]:
        """Where one request goes: one row per person, or one per channel for a group."""
        default_language = gathering.language if gathering else "en"
        if out.address is not None and out.channel is not None:
            return [(Reach(out.channel, out.address), None, default_language)]
        if out.kind == OutKind.GROUP:
            by_channel: dict[Channel, list[str]] = {}
            for member in out.members:
                reach = (await _person(tx, member, people, self.organisers)).reach()
                if reach and out.channel in (None, reach.channel):
                    by_channel.setdefault(reach.channel, []).append(reach.address)
            return [
                (Reach(channel, ",".join(addresses)), None, default_language)
                for channel, addresses in sorted(by_channel.items())
            ]
        record = await _person(tx, out.to, people, self.organisers)
        reach = record.reach(out.channel)
        if reach is None:
            log.warning(
                "person %s has no reachable address; message %s dropped", out.to, out.template
            )
            return []
        return [(reach, out.to, record.info.language)]

    async def _contacts(
        self, tx: Tx, shared: Sequence[PersonId], people: dict[PersonId, PersonRecord]
    ) -> dict[str, str]:
        """The addresses people agreed to share, by person id (flows never see them)."""
        contacts = {}
        for person in shared:
            reach = (await _person(tx, person, people, self.organisers)).reach()
            if reach is not None:
                contacts[str(person)] = reach.address
        return contacts

    async def _insert(
        self,
        tx: Tx,
        out: Outgoing,
        reach: Reach,
        person: PersonId | None,
        language: str,
        key: str,
        target: Target | None,
        gathering: GatheringConfig | None,
        cause: InboundMessage | None,
        now: datetime,
        people: dict[PersonId, PersonRecord],
        sender: PersonId | None,
        audit: list[tuple[object, ...]] | None,
    ) -> Inserted | None:
        if await self._unwanted(tx, out, reach, person, target, now, audit):
            return None
        context = {**common_context(gathering, person, people), **out.context}
        if out.contacts:
            context["contacts"] = await self._contacts(tx, out.contacts, people)
        try:
            rendered = self.renderer.render(
                out.template, language=language, channel=reach.channel.value, context=context
            )
            room = (
                self.renderer.render(
                    out.room, language=language, channel=reach.channel.value, context=context
                )
                if out.room and out.kind == OutKind.GROUP
                else None
            )
        except TemplateError as exc:
            # A broken template must not make the inbound message fail forever (it would be
            # redelivered and fail again); the organisers hear of it instead.
            log.error("%s", exc)
            if out.template != "core/template_failed" and self.organisers:
                alerts = self.organiser_alerts("core/template_failed", {"error": str(exc)})
                await self.enqueue(
                    tx,
                    alerts,
                    target=None,
                    gathering=None,
                    cause=cause,
                    index_base=900,
                    now=now,
                    key_prefix=f"{key}!template",
                )
            return None
        gathering_slug = target.gathering if target else None
        flow = target.flow if target else None
        # Only mail threads (References); a chat room is its own thread.
        by_mail = reach.channel == Channel.EMAIL
        thread_root = (
            await _thread_root(tx, person, gathering_slug, flow) if person and by_mail else None
        )
        in_reply_to = None
        if cause is not None and cause.sender is not None and person is not None:
            if sender == person and CHANNEL_OF_KIND[cause.sender.kind] == reach.channel:
                in_reply_to = cause.external_id
        token = None
        if self.token_maker and person and reach.channel == Channel.EMAIL and target:
            token = self.token_maker(person, f"{target.gathering}/{target.flow}")
        payload = RowPayload(
            is_reply=out.is_reply,
            in_reply_to=in_reply_to,
            thread_root=thread_root,
            reply_token=token,
            body=_body(out, rendered, room, reach),
        )
        # What hangs off the row (its invites, its audit line) is written only if the row is.
        then: list[tuple[str, Sequence[object]]] = []
        if out.invite is not None and target is not None:
            for member in out.members or ((person,) if person else ()):
                if member is not None:
                    then.append(_invite_row(out, target, member, now))
        if person:
            then.append(
                (
                    AUDIT_INSERT,
                    (
                        person,
                        now_iso(now),
                        "out",
                        reach.channel.value,
                        gathering_slug,
                        flow,
                        out.template,
                    ),
                )
            )
        return tx.defer_insert(
            "INSERT INTO outbox (idempotency_key, person_id, gathering, flow, channel, address,"
            " kind, payload, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (
                key,
                person,
                gathering_slug,
                flow,
                reach.channel.value,
                out.group if out.kind == OutKind.GROUP else reach.address,
                out.kind.value,
                payload.model_dump_json(),
                now_iso(now),
                now_iso(now),
            ),
            then,
        )

    async def _unwanted(
        self,
        tx: Tx,
        out: Outgoing,
        reach: Reach,
        person: PersonId | None,
        target: Target | None,
        now: datetime,
        audit: list[tuple[object, ...]] | None,
    ) -> bool:
        """Whether this mail would pass the daily limit for an unproven address: then it is
        dropped, noted in the audit log and the service log, and nobody is told."""
        limit = self.unproven_daily_limit
        if (
            limit is None
            or reach.channel != Channel.EMAIL
            or out.kind == OutKind.GROUP
            or reach.address.lower() in self._organiser_mail
            or not await over_limit(tx, reach.channel, reach.address, limit, now)
        ):
            return False
        log.warning(
            "not sent: %s to %s, which has not proven itself and already got %s today",
            out.template,
            reach.address,
            limit,
        )
        owner = person or out.to or None  # a link code counts against who asked for it
        if owner:
            note = (
                owner,
                now_iso(now),
                "note",
                reach.channel.value,
                target.gathering if target else None,
                target.flow if target else None,
                f"not sent ({limit} a day to an unproven address): {out.template}",
            )
            if audit is not None:
                audit.append(note)
            else:
                tx.defer(AUDIT_INSERT, note)
        return True


async def _person(
    tx: Tx, person: PersonId, cache: dict[PersonId, PersonRecord], organisers: frozenset[Identity]
) -> PersonRecord:
    if person not in cache:
        cache[person] = await load_person(tx, person, organisers)
    return cache[person]


async def _thread_root(
    tx: Tx, person: PersonId, gathering: str | None, flow: str | None
) -> str | None:
    """The key of the first message of this conversation, so later ones thread under it."""
    row = await tx.one(
        "SELECT idempotency_key FROM outbox WHERE person_id = ? AND gathering IS ? AND flow IS ?"
        " ORDER BY id LIMIT 1",
        (person, gathering, flow),
    )
    return str(row[0]) if row else None


def _invite_row(
    out: Outgoing, target: Target, person: PersonId, now: datetime
) -> tuple[str, Sequence[object]]:
    assert out.invite is not None
    return (
        "INSERT INTO invites (uid, gathering, flow, person_id, sequence, method, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid, person_id) DO UPDATE SET"
        " sequence = excluded.sequence, method = excluded.method, updated_at = excluded.updated_at",
        (
            out.invite.uid,
            target.gathering,
            target.flow,
            person,
            out.invite.sequence,
            out.invite.method,
            now_iso(now),
        ),
    )


def _body(out: Outgoing, rendered: Rendered, room: Rendered | None, reach: Reach) -> OutboxBody:
    subject, text, html = rendered.subject, rendered.text, rendered.html
    if out.kind == OutKind.POLL:
        return PollBody(
            subject=subject,
            text=text,
            html=html,
            invite=out.invite,
            questions=out.questions,
            options=out.options,
            multiple=out.multiple,
        )
    if out.kind == OutKind.GROUP:
        return GroupBody(
            subject=subject,
            text=text,
            html=html,
            invite=out.invite,
            questions=out.questions,
            group_addresses=tuple(reach.address.split(",")),
            room_name=room.subject if room else "",
            room_topic=room.text if room else "",
            closes=out.closes,
        )
    return TextBody(
        subject=subject,
        text=text,
        html=html,
        invite=out.invite,
        questions=out.questions,
        attachments=out.attachments,
    )


def check_attachments(out: Outgoing) -> None:
    """Refuse files the channels could not deliver (see MAX_ATTACHMENT_BYTES): better a clear
    error in the step that asked than a message that is buried when the server refuses it."""
    if not out.attachments:
        return
    if out.kind != OutKind.TEXT:
        raise ValueError(f"{out.template}: only TEXT messages carry attachments, not {out.kind}")
    total = sum(len(a.data) for a in out.attachments)
    if total > MAX_ATTACHMENT_BYTES:
        raise ValueError(
            f"{out.template}: attachments of {total:,} bytes are over the limit of"
            f" {MAX_ATTACHMENT_BYTES:,} bytes per message"
        )


def common_context(
    gathering: GatheringConfig | None, person: PersonId | None, people: dict[PersonId, PersonRecord]
) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if gathering is not None:
        context["gathering"] = {
            "slug": gathering.slug,
            "name": gathering.name,
            "venue": gathering.venue,
            "starts": gathering.starts,
            "ends": gathering.ends,
            "timezone": gathering.timezone,
            "description": gathering.description,
        }
    if person is not None and person in people:
        context["person"] = {"name": people[person].info.display_name}
    return context

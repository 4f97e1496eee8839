"""People and their identities, as the engine reads and writes them inside a transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flows.base import PersonInfo
from gateway.model import Channel, Identity, IdentityKind, PersonId
from gateway.store.db import Row, Tx, now_iso

#: How a preferred channel maps to the identity kind that reaches it.
CHANNEL_OF_KIND = {IdentityKind.EMAIL: Channel.EMAIL, IdentityKind.MATRIX: Channel.MATRIX}


@dataclass(frozen=True, slots=True)
class Reach:
    """Where to send a person's messages: the chosen channel and address, if any."""

    channel: Channel
    address: str


@dataclass(frozen=True, slots=True)
class PersonRecord:
    info: PersonInfo
    #: Verified, non-failing addresses by channel, in the order they were added.
    addresses: dict[Channel, str]

    def reach(self, forced: Channel | None = None) -> Reach | None:
        """The preferred channel first, then any other; None if the person is unreachable."""
        order = [forced] if forced else [self.info.channel, Channel.MATRIX, Channel.EMAIL]
        for channel in order:
            if channel is not None and channel in self.addresses:
                return Reach(channel, self.addresses[channel])
        return None


async def find_person(tx: Tx, identity: Identity) -> PersonId | None:
    row = await tx.one(
        "SELECT person_id FROM identities WHERE kind = ? AND address = ?",
        (identity.kind.value, identity.address),
    )
    return PersonId(row[0]) if row else None


async def create_person(tx: Tx, identity: Identity, *, language: str) -> PersonId:
    """A new person known by one identity; their first channel becomes the preferred one."""
    channel = CHANNEL_OF_KIND[identity.kind]
    person = await tx.insert(
        "INSERT INTO people (display_name, language, preferred_channel, created_at)"
        " VALUES (?, ?, ?, ?)",
        (identity.display_name or "", language, channel.value, now_iso()),
    )
    assert person is not None
    tx.defer(
        "INSERT INTO identities (person_id, kind, address) VALUES (?, ?, ?)",
        (person, identity.kind.value, identity.address),
    )
    return PersonId(person)


def new_person_record(
    person: PersonId, identity: Identity, language: str, organisers: frozenset[Identity]
) -> PersonRecord:
    """The record of a person `create_person` just made, as `load_person` would read it
    (an identity starts verified, without failures): one round trip fewer for a newcomer."""
    channel = CHANNEL_OF_KIND[identity.kind]
    info = PersonInfo(
        id=person,
        display_name=identity.display_name or "",
        language=language,
        channel=channel,
        channels=(channel,),
        organiser=Identity(identity.kind, identity.address) in organisers,
    )
    return PersonRecord(info=info, addresses={channel: identity.address})


#: A person and their identities as one row, so reading a person is one round trip.
PERSON_COLUMNS = (
    "p.id AS person_id, p.display_name, p.language, p.preferred_channel,"
    " (SELECT json_group_array(json_array(i.kind, i.address, i.verified, i.failures))"
    "  FROM (SELECT * FROM identities WHERE person_id = p.id ORDER BY id) AS i) AS identities"
)


async def load_person(tx: Tx, person: PersonId, organisers: frozenset[Identity]) -> PersonRecord:
    row = await tx.one(f"SELECT {PERSON_COLUMNS} FROM people p WHERE p.id = ?", (person,))
    if row is None:
        raise LookupError(f"person {person} does not exist")
    return person_from_row(row, organisers)


def person_from_row(row: Row, organisers: frozenset[Identity]) -> PersonRecord:
    """Build a PersonRecord from a row selected with PERSON_COLUMNS."""
    addresses: dict[Channel, str] = {}
    is_organiser = False
    for kind_name, address, verified, failures in json.loads(row["identities"] or "[]"):
        kind = IdentityKind(kind_name)
        if Identity(kind, address) in organisers:
            is_organiser = True
        if verified and failures < BOUNCE_LIMIT:
            addresses.setdefault(CHANNEL_OF_KIND[kind], address)
    preferred = Channel(row["preferred_channel"]) if row["preferred_channel"] else None
    info = PersonInfo(
        id=PersonId(row["person_id"]),
        display_name=row["display_name"],
        language=row["language"],
        channel=preferred,
        channels=tuple(addresses),
        organiser=is_organiser,
    )
    return PersonRecord(info=info, addresses=addresses)


#: After this many hard bounces an address is no longer used; the person's other channel is.
BOUNCE_LIMIT = 3


async def record_bounce(
    tx: Tx, address: str, *, permanent: bool, original: str | None
) -> PersonId | None:
    """Count a failure for an email address; return its person when it just crossed the limit.

    Only a bounce of a message we sent to that address counts (its Message-ID is in the
    report): anyone can mail us a report naming any address, and three forged ones cut a
    person off."""
    if not permanent or not original:
        return None
    ours = await tx.one(
        "SELECT 1 FROM outbox WHERE trim(external_id, '<>') = trim(?, '<>')"
        " AND lower(address) = lower(?)",
        (original, address),
    )
    if ours is None:
        return None
    row = await tx.one(
        "UPDATE identities SET failures = failures + 1 WHERE kind = 'email' AND address = ?"
        " RETURNING person_id, failures",
        (address.lower(),),
    )
    if row and row["failures"] == BOUNCE_LIMIT:
        return PersonId(row["person_id"])
    return None


async def update_person(
    tx: Tx,
    person: PersonId,
    link: list[Identity],
    preferred: Channel | None,
    language: str | None,
) -> list[Identity]:
    """Apply a flow's changes to a person; return identities that belong to someone else.

    An identity already owned by another person is not moved: merging two people is an
    organiser's decision, so the flow is expected to tell the person to contact them.
    """
    refused = []
    for identity in link:
        owner = await find_person(tx, identity)
        if owner is None:
            await tx.execute(
                "INSERT INTO identities (person_id, kind, address) VALUES (?, ?, ?)",
                (person, identity.kind.value, identity.address),
            )
        elif owner != person:
            refused.append(identity)
    if preferred is not None:
        await tx.execute(
            "UPDATE people SET preferred_channel = ? WHERE id = ?", (preferred.value, person)
        )
    if language is not None:
        await tx.execute("UPDATE people SET language = ? WHERE id = ?", (language, person))
    return refused


async def reset_bounces(tx: Tx, address: str) -> None:
    """The address's owner just proved they read our mail there: it works again."""
    tx.defer(
        "UPDATE identities SET failures = 0 WHERE kind = 'email' AND address = ? AND failures > 0",
        (address.lower(),),
    )

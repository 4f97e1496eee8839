"""People and their identities, as the engine reads and writes them inside a transaction."""

from __future__ import annotations

from dataclasses import dataclass

from flows.base import PersonInfo
from gateway.model import Channel, Identity, IdentityKind, PersonId
from gateway.store.db import Tx, now_iso

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
    await tx.execute(
        "INSERT INTO identities (person_id, kind, address) VALUES (?, ?, ?)",
        (person, identity.kind.value, identity.address),
    )
    return PersonId(person)


async def load_person(tx: Tx, person: PersonId, organisers: frozenset[Identity]) -> PersonRecord:
    rows = await tx.all(
        "SELECT p.display_name, p.language, p.preferred_channel, i.kind, i.address,"
        " i.verified, i.failures"
        " FROM people p LEFT JOIN identities i ON i.person_id = p.id"
        " WHERE p.id = ? ORDER BY i.id",
        (person,),
    )
    if not rows:
        raise LookupError(f"person {person} does not exist")
    first = rows[0]
    addresses: dict[Channel, str] = {}
    is_organiser = False
    for row in rows:
        if row["kind"] is None:
            continue
        kind = IdentityKind(row["kind"])
        if Identity(kind, row["address"]) in organisers:
            is_organiser = True
        if row["verified"] and row["failures"] < BOUNCE_LIMIT:
            addresses.setdefault(CHANNEL_OF_KIND[kind], row["address"])
    preferred = Channel(first["preferred_channel"]) if first["preferred_channel"] else None
    info = PersonInfo(
        id=person,
        display_name=first["display_name"],
        language=first["language"],
        channel=preferred,
        channels=tuple(addresses),
        organiser=is_organiser,
    )
    return PersonRecord(info=info, addresses=addresses)


#: After this many hard bounces an address is no longer used; the person's other channel is.
BOUNCE_LIMIT = 3


async def record_bounce(tx: Tx, address: str, *, permanent: bool) -> PersonId | None:
    """Count a failure for an email address; return its person when it just crossed the limit."""
    if not permanent:
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
        await tx.execute("UPDATE people SET preferred_channel = ? WHERE id = ?", (preferred.value, person))
    if language is not None:
        await tx.execute("UPDATE people SET language = ? WHERE id = ?", (language, person))
    return refused

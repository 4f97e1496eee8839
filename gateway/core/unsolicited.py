"""A daily limit on mail to addresses that never proved they want it.

Anyone can write any address in `From:` or in `link email …`, so without a limit a stranger
could make the gateway mail a third party as often as they like: one welcome per forged
hello, one code per `link`. An address proves itself by replying through one of our
messages (a signed reply token, or In-Reply-To one of ours) or by entering a code sent to
it; mail to it is then never limited. To an unproven address at most `limit` messages are
queued per day; more are dropped, with a log line and an audit note, and nobody is told (a
notice would be more mail to the same address, or a loop through the organisers).

The limit lives where outbox rows are written (core/outbound.py), because every road to a
third party (flow replies, rejections, set-aside notes, link codes) ends there, and a row
never queued costs nothing to send. It counts the rows themselves, so it needs no counter
of its own and a crash that rolls back a transaction also rolls back what it counted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.model import Channel
from gateway.store.db import Tx, now_iso

#: The window the limit counts in.
WINDOW = timedelta(days=1)


async def mark_proven(tx: Tx, channel: Channel, address: str, now: datetime) -> None:
    """`address` answered through one of our messages, or entered a code sent to it."""
    tx.defer(
        "INSERT INTO proven_addresses (channel, address, proven_at) VALUES (?, ?, ?)"
        " ON CONFLICT (channel, address) DO NOTHING",
        (channel.value, address.lower(), now_iso(now)),
    )


async def over_limit(tx: Tx, channel: Channel, address: str, limit: int, now: datetime) -> bool:
    """Whether one more message to `address` would pass the limit (never when proven)."""
    proven = await tx.one(
        "SELECT 1 FROM proven_addresses WHERE channel = ? AND address = ?",
        (channel.value, address.lower()),
    )
    if proven is not None:
        return False
    row = await tx.one(
        "SELECT COUNT(*) FROM outbox WHERE channel = ? AND address = ? AND created_at >= ?",
        (channel.value, address, now_iso(now - WINDOW)),
    )
    return row is not None and int(row[0]) >= limit

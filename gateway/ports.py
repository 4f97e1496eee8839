"""What core and channels need from each other, so that neither imports the other.

The outbox worker needs a `Transport` per channel; a channel hands what it receives to an
`Inbound` (the engine, wired by the app); both report failures with the errors below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.model import Channel, InboundMessage, OutboxItem
from gateway.store.db import Store


class SendError(Exception):
    """A send failed; subclasses say whether trying again can help."""


class TransientError(SendError):
    """Try again later: a timeout, a 4xx SMTP reply, a rate limit, a homeserver outage."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the server asked us to wait (Matrix retry_after_ms, SMTP 421 hints).
        self.retry_after = retry_after


class EngineStopped(Exception):
    """The engine stopped before this message was committed: it was not applied."""


class PermanentError(SendError):
    """Trying again cannot help: a 5xx SMTP reply, an unknown Matrix user, a forbidden room."""


class Transport(Protocol):
    """Sends one outbox item and returns the external id it got (Message-ID, event id).

    Implementations must be idempotent for a repeated `item.idempotency_key`: derive the
    Matrix txn_id or the email Message-ID from it, so a resend after a crash is recognised.
    """

    channel: Channel

    async def send(self, item: OutboxItem) -> str: ...


class Applied(Protocol):
    """What a channel learns about one message it handed in."""

    @property
    def outbox(self) -> tuple[int, ...]: ...


class Inbound(Protocol):
    """Where a channel hands its messages: applied in one transaction with its cursor."""

    async def handle_batch(
        self, messages: Sequence[InboundMessage], *, cursor: tuple[str, str] | None = None
    ) -> Sequence[Applied]: ...


#: Where the email channel keeps mail it set aside (else also a folder of the mailbox).
QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class SetAside:
    """One inbound mail set aside after failing again and again, as `status` lists it."""

    id: int
    key: str
    place: str
    sender: str | None
    subject: str
    attempts: int
    reason: str
    set_aside_at: str


#: How the organisers' status learns about set-aside mail without knowing the channel:
#: (how many, the newest few). Wired by the app (gateway/app/channels.py).
SetAsideReader = Callable[[Store], Awaitable[tuple[int, list[SetAside]]]]

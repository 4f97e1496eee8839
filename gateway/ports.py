"""What the outbox worker needs from a transport, and how transports report failures."""

from __future__ import annotations

from typing import Protocol

from gateway.model import Channel, OutboxItem


class SendError(Exception):
    """A send failed; subclasses say whether trying again can help."""


class TransientError(SendError):
    """Try again later: a timeout, a 4xx SMTP reply, a rate limit, a homeserver outage."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the server asked us to wait (Matrix retry_after_ms, SMTP 421 hints).
        self.retry_after = retry_after


class PermanentError(SendError):
    """Trying again cannot help: a 5xx SMTP reply, an unknown Matrix user, a forbidden room."""


class Transport(Protocol):
    """Sends one outbox item and returns the external id it got (Message-ID, event id).

    Implementations must be idempotent for a repeated `item.idempotency_key`: derive the
    Matrix txn_id or the email Message-ID from it, so a resend after a crash is recognised.
    """

    channel: Channel

    async def send(self, item: OutboxItem) -> str: ...

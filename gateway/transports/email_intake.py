"""One mail in: parse, map to an InboundMessage, apply with the engine; or set it aside.

Shared by the IMAP reader and the SMTP/LMTP listener (gateway/transports/email_in.py), so
a mail is read the same way whichever road it took.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.config import EmailSettings
from gateway.model import Channel, InboundKind, InboundMessage
from gateway.transports.email_inbound import Conversations, external_id, parse_raw, to_inbound

log = logging.getLogger(__name__)


class Handler(Protocol):
    """The engine as the intake sees it (`Engine.handle`, `Engine.enqueue_alert`)."""

    async def handle(
        self, message: InboundMessage, *, cursor: tuple[str, str] | None = None
    ) -> Any: ...

    async def enqueue_alert(
        self, template: str, context: Mapping[str, Any], key: str
    ) -> Any: ...


class MailIntake:
    """raw bytes → parse → InboundMessage → engine, shared by both receiving paths."""

    def __init__(
        self,
        settings: EmailSettings,
        engine: Handler,
        *,
        conversations: Conversations | None = None,
        after_commit: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.conversations = conversations or {}
        #: Called after each committed message (wake the outbox worker: it has replies).
        self.after_commit = after_commit
        self.clock = clock

    async def accept(
        self, raw: bytes, *, cursor: tuple[str, str] | None = None,
        recipients: Iterable[str] = (),
    ) -> Any:
        """Apply one mail. `recipients` are envelope addresses the headers may not show."""
        headers = b"".join(b"Delivered-To: " + r.encode() + b"\r\n" for r in recipients)
        parsed = parse_raw(headers + raw, self.settings)
        # The dedupe key hashes the mail as the sender wrote it, whichever path it came by.
        message = to_inbound(parsed, self.settings, raw=raw, conversations=self.conversations,
                             received_at=self.clock())
        result = await self.engine.handle(message, cursor=cursor)
        log.info("mail %s: %s", message.external_id, getattr(result, "outcome", result))
        if self.after_commit is not None:
            self.after_commit()
        return result

    async def shunt(
        self, raw: bytes, *, cursor: tuple[str, str], folder: str, attempts: int, reason: str
    ) -> str:
        """Tell the organisers about a mail the engine keeps failing on, and record it rejected.

        The record is a REJECTED message with the mail's own dedupe key and no sender: the
        engine stores it without routing or running a flow (the path that failed) and answers
        nobody, and a redelivery of the mail is then a duplicate. The alert goes first and is
        keyed by the mail, so a crash between the two repeats it at most once, never loses it.
        If recording fails too, the engine itself is failing: the error propagates and the
        caller must keep the mail. Returns the mail's dedupe key.
        """
        try:
            parsed = parse_raw(raw, self.settings)
            key, sender, subject = external_id(parsed, raw), parsed.from_address, parsed.subject
        except Exception:  # the parser may be what fails on this mail
            key, sender, subject = "sha256:" + hashlib.sha256(raw).hexdigest(), None, ""
        await self.engine.enqueue_alert(
            "core/mail_failed",
            {"sender": sender, "mail_subject": subject, "message_id": key, "folder": folder,
             "attempts": attempts, "reason": reason},
            f"mail_failed:{key}",
        )
        record = InboundMessage(channel=Channel.EMAIL, external_id=key,
                                kind=InboundKind.REJECTED, received_at=self.clock(),
                                text=f"set aside in {folder} after {attempts} failures: {reason}")
        await self.engine.handle(record, cursor=cursor)
        if self.after_commit is not None:
            self.after_commit()
        return key

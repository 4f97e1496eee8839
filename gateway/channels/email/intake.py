"""One mail in: parse, map to an InboundMessage, apply with the engine; or set it aside.

Shared by the IMAP reader and the SMTP/LMTP listener (gateway/channels/email/receive.py), so
a mail is read the same way whichever road it took, and a mail that always fails is set
aside the same way after the same number of tries (counted in gateway/transports/
email_failures.py), whether a folder or a retrying MTA brings it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.channels.email.failures import MailFailures, is_transient
from gateway.channels.email.inbound import (
    Conversations,
    external_id,
    is_own_address,
    parse_raw,
    to_inbound,
)
from gateway.config import EmailSettings
from gateway.model import Channel, Identity, InboundKind, InboundMessage
from gateway.ports import QUARANTINE

log = logging.getLogger(__name__)


class Handler(Protocol):
    """The engine as the intake sees it (`Engine.handle`, `Engine.enqueue_alert`)."""

    async def handle(
        self, message: InboundMessage, *, cursor: tuple[str, str] | None = None
    ) -> Any: ...

    async def enqueue_alert(self, template: str, context: Mapping[str, Any], key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class MailId:
    """What an alert about a mail names: its dedupe key, sender and subject."""

    key: str
    sender: str | None
    subject: str


@dataclass(frozen=True, slots=True)
class Taken:
    """A mail the intake is done with: applied, or set aside as quarantine entry `number`."""

    set_aside: bool
    key: str = ""
    number: int | None = None


class MailIntake:
    """raw bytes → parse → InboundMessage → engine, shared by both receiving paths."""

    def __init__(
        self,
        settings: EmailSettings,
        engine: Handler,
        failures: MailFailures,
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
        self.failures = failures
        #: Keys of mail whose failures this process counted: only their success costs a
        #: write to clear the count (older leftovers expire, see email_failures.FORGET_AFTER).
        self._failing: set[str] = set()

    async def accept(
        self,
        raw: bytes,
        *,
        cursor: tuple[str, str] | None = None,
        recipients: Iterable[str] = (),
    ) -> Any:
        """Apply one mail. `recipients` are envelope addresses the headers may not show."""
        result, _ = await self.apply(raw, cursor=cursor, recipients=recipients)
        return result

    async def apply(
        self, raw: bytes, *, cursor: tuple[str, str] | None, recipients: Iterable[str]
    ) -> tuple[Any, str]:
        """Apply one mail; (the engine's result, the mail's dedupe key)."""
        # Parsing a large mail takes a while: in a thread, the event loop keeps receiving
        # (and answering) the small ones meanwhile. The bytes are not copied for it.
        parsed = await asyncio.to_thread(parse_raw, raw, self.settings, tuple(recipients))
        # The dedupe key hashes the mail as the sender wrote it, whichever path it came by.
        message = to_inbound(
            parsed,
            self.settings,
            raw=raw,
            conversations=self.conversations,
            received_at=self.clock(),
        )
        result = await self.engine.handle(message, cursor=cursor)
        log.info("mail %s: %s", message.external_id, getattr(result, "outcome", result))
        if self.after_commit is not None:
            self.after_commit()
        return result, message.external_id

    async def too_large(
        self, head: bytes, *, size: int, limit: int, cursor: tuple[str, str] | None = None
    ) -> None:
        """A mail over `limit` bytes, of which only the header `head` was fetched: its sender
        is told it was not read (unless it is a machine's mail, or forged), nothing applied."""
        parsed = parse_raw(head, self.settings)
        message = to_inbound(
            parsed,
            self.settings,
            raw=head,
            conversations=self.conversations,
            received_at=self.clock(),
        )
        if message.kind == InboundKind.TEXT:
            message = replace(
                message,
                kind=InboundKind.REJECTED,
                text=f"it is {size / 1e6:.1f} MB, more than the {limit / 1e6:.1f} MB we accept"
                " (attachments are not read anyway), so we did not read it",
                answers={},
                target=None,
                in_reply_to=None,
            )
        result = await self.engine.handle(message, cursor=cursor)
        log.warning("mail %s of %s bytes not read: %s", message.external_id, size, result)
        if self.after_commit is not None:
            self.after_commit()

    async def attempt(
        self,
        raw: bytes,
        *,
        place: str,
        max_failures: int,
        cursor: tuple[str, str] | None = None,
        recipients: Iterable[str] = (),
    ) -> Taken:
        """Apply one mail, or set it aside once it has failed `max_failures` times.

        Raises when the mail must come again later: the IMAP reader leaves it in the folder,
        the listener answers 451. A failure counts towards the limit only when it is about
        the mail (see `is_transient`) and the count could be stored; otherwise the gateway
        itself is failing, and setting mail aside would turn an outage into lost answers.
        """
        try:
            _, key = await self.apply(raw, cursor=cursor, recipients=recipients)
        except Exception as exc:
            if is_transient(exc):
                raise
            mail = await asyncio.to_thread(identify, raw, self.settings)
            reason = f"{type(exc).__name__}: {exc}"[:500]
            attempts, again = await self._count(mail.key, reason)
            if attempts is None or (attempts < max_failures and not again):
                log.warning(
                    "mail %s failed (%s of %s): %s",
                    mail.key,
                    attempts or "uncounted",
                    max_failures,
                    reason,
                )
                raise
            number = await self.shunt(
                raw, mail, cursor=cursor, place=place, attempts=attempts, reason=reason
            )
            log.error(
                "mail %s failed %s times, set aside in %s: %s",
                mail.key,
                attempts,
                _where(place, number),
                reason,
            )
            self._failing.discard(mail.key)
            await self._tell_sender(mail)
            return Taken(True, mail.key, number)
        if self._failing:
            await self._forget(key)
        return Taken(False)

    async def _tell_sender(self, mail: MailId) -> None:
        """A mail set aside must not vanish for its sender: they hear that it was not read and
        that the organisers will look at it (the engine's reply to an unreadable message)."""
        if not mail.sender or is_own_address(mail.sender, self.settings):
            return
        note = InboundMessage(
            channel=Channel.EMAIL,
            external_id=f"{mail.key}/set-aside",
            kind=InboundKind.REJECTED,
            received_at=self.clock(),
            sender=Identity.email(mail.sender),
            text="we could not process your message, so it was set aside for the organisers,"
            " who will look at it",
        )
        try:
            await self.engine.handle(note)
        except Exception:  # telling is best effort: the mail itself is safe in the quarantine
            log.exception("mail %s: could not tell its sender it was set aside", mail.key)

    async def _count(self, key: str, reason: str) -> tuple[int | None, bool]:
        """(attempts so far, set aside before); no attempts when even counting fails."""
        try:
            attempts, again = await self.failures.count(key, reason)
        except Exception:
            log.exception("mail %s: its failure cannot be recorded either", key)
            return None, False
        self._failing.add(key)
        return attempts, again

    async def _forget(self, key: str) -> None:
        """Drop the failures of a mail that went through; it is applied whatever happens here."""
        if key not in self._failing:
            return
        try:
            await self.failures.forget(key)
            self._failing.discard(key)
        except Exception:
            log.exception("mail %s: its earlier failures were not cleared", key)

    async def shunt(
        self,
        raw: bytes,
        mail: MailId,
        *,
        cursor: tuple[str, str] | None,
        place: str,
        attempts: int,
        reason: str,
    ) -> int:
        """Keep a mail the engine keeps failing on, tell the organisers, record it rejected.

        The copy goes to the quarantine first, then the alert (keyed by the mail), then the
        record: a REJECTED message with the mail's own dedupe key and no sender, which the
        engine stores without routing or running a flow (the path that failed) and answers
        nobody; a redelivery of the mail is then a duplicate. A crash in between repeats the
        steps already done at most once (each is keyed by the mail), and loses none. If
        recording fails too, the engine itself is failing: the error propagates and the
        caller must keep the mail. Returns the mail's quarantine number.
        """
        number = await self.failures.quarantine(
            mail.key,
            raw,
            place=place,
            sender=mail.sender,
            subject=mail.subject,
            attempts=attempts,
            reason=reason,
        )
        await self.engine.enqueue_alert(
            "core/mail_failed",
            {
                "sender": mail.sender,
                "mail_subject": mail.subject,
                "message_id": mail.key,
                "folder": None if place == QUARANTINE else place,
                "quarantined": number,
                "attempts": attempts,
                "reason": reason,
            },
            f"mail_failed:{mail.key}",
        )
        text = f"set aside in {_where(place, number)} after {attempts} failures: {reason}"
        record = InboundMessage(
            channel=Channel.EMAIL,
            external_id=mail.key,
            kind=InboundKind.REJECTED,
            received_at=self.clock(),
            text=text,
        )
        await self.engine.handle(record, cursor=cursor)
        if self.after_commit is not None:
            self.after_commit()
        return number


def identify(raw: bytes, settings: EmailSettings) -> MailId:
    """The mail's dedupe key, sender and subject, even when it cannot be parsed."""
    try:
        parsed = parse_raw(raw, settings)
        # A machine's mail (a bounce, an auto-reply) or a forged From is not answered.
        machine = parsed.kind in ("bounce", "auto_reply") or parsed.auth_failed
        sender = None if machine else parsed.from_address
        return MailId(external_id(parsed, raw), sender, parsed.subject)
    except Exception:  # the parser may be what fails on this mail
        return MailId("sha256:" + hashlib.sha256(raw).hexdigest(), None, "")


def _where(place: str, number: int) -> str:
    return f"quarantine #{number}" if place == QUARANTINE else f"{place} (quarantine #{number})"

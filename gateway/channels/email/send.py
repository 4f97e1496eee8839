"""Sending outbox items as email over SMTP: a small connection pool and the EmailTransport.

Connections are reused across messages because the handshake (TCP, TLS, EHLO, AUTH) costs
more than a message: over loopback one reused connection sends about twice as fast as a new
one per message, and a real provider also counts logins. A reused connection may have been
closed by the server while idle (servers drop idle clients after a minute or so); that is
not a failure of the message, so the pool reconnects once and sends again.

Every mail's Message-ID is derived from the outbox row's idempotency key, so the Message-ID
is known before sending, a resend after a crash carries the same one (receivers such as
Gmail drop the duplicate), and replies' In-Reply-To finds the row again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiosmtplib
from aiosmtplib import SMTPResponse

from gateway.channels.email.compose import (
    OutgoingEmail,
    ascii_address,
    compose_bytes,
    dkim_sign,
    message_id_for,
    needs_smtputf8,
)
from gateway.channels.email.ical.invite import invite_ics
from gateway.channels.email.token import reply_address
from gateway.config import EmailSettings, SmtpSettings
from gateway.model import Channel, GroupBody, Invite, OutboxItem, TextBody
from gateway.ports import PermanentError, SendError, TransientError

log = logging.getLogger(__name__)

#: The subject of a conversation's first message, by its idempotency key (from the store).
RootSubject = Callable[[str], Awaitable[str | None]]


class SmtpPool:
    """Up to `max_connections` SMTP connections to one server, reused, paced by `rate`."""

    def __init__(self, settings: SmtpSettings, *, local_hostname: str) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self._password = settings.password.get() if settings.password else None
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._next_slot = 0.0
        self.connects = 0

    async def send(
        self, sender: str, recipients: list[str], raw: bytes, *, smtputf8: bool = False
    ) -> dict[str, SMTPResponse]:
        """One SMTP transaction; returns the refused recipients (raises if all were).

        `smtputf8` sends it with SMTPUTF8 (RFC 6531), which aiosmtplib refuses with
        SMTPNotSupported, before MAIL, when the server does not offer it."""
        options = ["SMTPUTF8"] if smtputf8 else []
        async with self._slots:
            await self._pace()
            client = self._idle.pop() if self._idle else None
            if client is not None and client.is_connected:
                try:
                    return await self._transaction(client, sender, recipients, raw, options)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                    log.debug("idle SMTP connection was closed by the server; reconnecting")
                except aiosmtplib.SMTPResponseException as exc:
                    if exc.code != 421:  # 421: the server is closing this connection
                        raise
            elif client is not None:
                client.close()
            client = await self._connect()
            return await self._transaction(client, sender, recipients, raw, options)

    async def _transaction(
        self,
        client: aiosmtplib.SMTP,
        sender: str,
        recipients: list[str],
        raw: bytes,
        options: list[str],
    ) -> dict[str, SMTPResponse]:
        try:
            errors, _ = await client.sendmail(sender, recipients, raw, mail_options=options)
        except aiosmtplib.SMTPNotSupported:
            self._idle.append(client)  # refused before MAIL: the connection is clean
            raise
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            # aiosmtplib sent RSET after the refusal, so a connection still open is clean;
            # after a 421 the server is closing it.
            if client.is_connected and getattr(exc, "code", 0) != 421:
                self._idle.append(client)
            else:
                client.close()
            raise
        except BaseException:
            client.close()
            raise
        self._idle.append(client)
        return errors

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.security == "tls",
            start_tls=True if s.security == "starttls" else False,
            timeout=s.timeout,
            local_hostname=self.local_hostname,
            username=s.username,
            password=self._password,
        )
        await client.connect()
        self.connects += 1
        return client

    async def _pace(self) -> None:
        """Space sends 1/rate apart across all connections (a provider's sending quota)."""
        if self.settings.rate_per_second is None:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self.settings.rate_per_second
        if slot > now:
            await asyncio.sleep(slot - now)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


class EmailTransport:
    """Sends outbox items as mail; `send` returns the Message-ID (the row's external id)."""

    channel = Channel.EMAIL

    def __init__(
        self,
        settings: EmailSettings,
        *,
        root_subject: RootSubject | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        pool: SmtpPool | None = None,
    ) -> None:
        self.settings = settings
        self.root_subject = root_subject
        self.clock = clock
        domain = settings.address.rpartition("@")[2]
        self.pool = pool or SmtpPool(settings.smtp, local_hostname=domain)
        self._dkim_key = settings.dkim.private_key.get().encode() if settings.dkim else None
        #: Group members that already got a message whose other copies are being retried, so
        #: a retry in this process does not send them a second copy.
        self._delivered: dict[str, set[str]] = {}

    async def close(self) -> None:
        await self.pool.close()

    async def send(self, item: OutboxItem) -> str:
        subject = await self._subject(item)
        if isinstance(item.body, GroupBody):
            await self._send_group(item, item.body, subject)
        else:
            await self._deliver(item, item.address, subject)
        return message_id_for(item.idempotency_key, self.settings.address)

    async def _send_group(self, item: OutboxItem, body: GroupBody, subject: str) -> None:
        """One copy per member, all with the same Message-ID and thread.

        Separate copies keep members' addresses private (nothing in the item says they
        agreed to share them) and let each invite name its own ATTENDEE. A member whose
        server refuses for good is skipped; a temporary refusal retries only the members
        not yet served. Only when every member failed for good is the row dead.
        """
        done = self._delivered.setdefault(item.idempotency_key, set())
        transient: list[str] = []
        permanent: list[str] = []
        for address in body.group_addresses:
            if address in done:
                continue
            try:
                await self._deliver(item, address, subject)
            except TransientError as exc:
                transient.append(f"{address}: {exc}")
                continue
            except PermanentError as exc:
                permanent.append(f"{address}: {exc}")
                log.warning("group %s: %s refused for good: %s", item.address, address, exc)
            done.add(address)
        if transient:
            raise TransientError("; ".join(transient))
        del self._delivered[item.idempotency_key]
        if permanent and len(permanent) == len(body.group_addresses):
            raise PermanentError("; ".join(permanent))

    async def _deliver(self, item: OutboxItem, address: str, subject: str) -> None:
        try:
            raw = self.render(item, address, subject)
        except ValueError as exc:  # an address or header compose cannot write
            raise PermanentError(f"cannot compose mail to {address}: {exc}") from exc
        try:
            refused = await self.pool.send(
                self.settings.address,
                [ascii_address(address)],
                raw,
                smtputf8=needs_smtputf8(address),
            )
        except BaseException as exc:
            raise _classify(exc) from exc
        if refused:
            code, text = next(iter(refused.values()))
            raise _by_code(code, f"{address}: {code} {text}")

    def render(self, item: OutboxItem, address: str, subject: str | None = None) -> bytes:
        """The exact bytes sent to `address` for this item (DKIM-signed when configured)."""
        s = self.settings
        # The row's own time, so a resend of the same row is the same bytes (Date, DTSTAMP).
        now = item.created_at or self.clock()
        root = message_id_for(item.thread_root, s.address) if item.thread_root else None
        reply_to = None
        if item.reply_token:
            try:
                reply_to = reply_address(s.address, item.reply_token)
            except ValueError:
                log.warning(
                    "reply address too long for %s; replies route by In-Reply-To", s.address
                )
        body = item.body
        calendar = self._calendar(body.invite, address, now) if body.invite else None
        spec = OutgoingEmail(
            from_address=s.address,
            from_name=s.display_name,
            to_address=address,
            to_name="",
            subject=subject if subject is not None else body.subject,
            text=body.text,
            html=body.html or None,
            idempotency_key=item.idempotency_key,
            date=now,
            # Answering the person's own mail threads under it; otherwise under our first
            # message of the conversation, so every client keeps one thread per flow.
            in_reply_to=item.in_reply_to or root,
            references=[root] if root else [],
            reply_to=reply_to,
            auto_generated=not item.is_reply,
            list_unsubscribe=None if item.is_reply else _unsubscribe(reply_to or s.address),
            calendar=calendar,
            calendar_method=body.invite.method if body.invite else None,
            attachments=[
                (a.name, a.mime, a.data)
                for a in (body.attachments if isinstance(body, TextBody) else ())
            ],
        )
        raw = compose_bytes(spec)
        if s.dkim is not None and self._dkim_key is not None:
            raw = dkim_sign(
                raw, selector=s.dkim.selector, domain=s.dkim.domain, private_key_pem=self._dkim_key
            )
        return raw

    async def _subject(self, item: OutboxItem) -> str:
        """A stable Subject per conversation: Gmail threads only messages whose subjects match."""
        if item.thread_root is None or self.root_subject is None:
            return item.body.subject
        first = await self.root_subject(item.thread_root)
        if not first:
            return item.body.subject
        return first if first.lower().startswith("re:") else f"Re: {first}"

    def _calendar(self, invite: Invite, address: str, now: datetime) -> bytes:
        return invite_ics(
            invite,
            organizer_email=self.settings.address,
            organizer_name=self.settings.display_name,
            attendee=address,
            dtstamp=now,
        )


def _unsubscribe(address: str) -> str:
    return f"mailto:{address}?subject=unsubscribe&body=unsubscribe"


def _by_code(code: int, text: str) -> SendError:
    return PermanentError(text) if 500 <= code < 600 else TransientError(text)


def _classify(exc: BaseException) -> SendError:
    """SMTP failures as the outbox worker understands them: retry later, or never."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return PermanentError(text) if all(500 <= c < 600 for c in codes) else TransientError(text)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # Only SMTPUTF8 is ever asked for; without it there is no way to write the address
        # (a non-ASCII local part has no ASCII form), so waiting cannot help.
        return PermanentError(
            "the SMTP server does not offer SMTPUTF8, which mail to an address with"
            " non-ASCII characters before the @ needs: use a server that supports it"
            f" (Postfix: smtputf8_enable = yes), or ask the person for another address ({exc})"
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Wrong credentials are the service's problem, not the message's: keep retrying so
        # that fixing the config delivers the queue instead of burying it.
        return TransientError(f"SMTP login failed: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, f"{exc.code} {exc.message}")
    if isinstance(exc, ssl.SSLError):
        # Checked before ValueError, which a failed certificate check also is: a trust
        # problem is the service's to fix, and burying the queue would lose every message.
        return TransientError(f"TLS with the SMTP server failed: {exc}")
    if isinstance(exc, ValueError):
        return PermanentError(f"unusable address: {exc}")
    if isinstance(exc, (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)):
        return TransientError(f"{type(exc).__name__}: {exc}")
    raise exc

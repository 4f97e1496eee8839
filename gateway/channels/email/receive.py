"""Receiving email: an IMAP IDLE reader and an SMTP/LMTP listener, feeding one intake.

Both paths promise the same thing: a mail is applied exactly once, even if the service dies
at any point. The IMAP reader commits the inbox row and the folder cursor in one engine
transaction *before* moving the mail out of the folder; after a crash in between, the mail
is still there, its UID is covered by the cursor, and it is only moved. The listener answers
250 only after the engine committed, so a crash before that makes the sending MTA retry.
The inbox's UNIQUE (channel, Message-ID) turns every other redelivery into a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr

from aioimaplib import aioimaplib
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from gateway.channels.email.inbound import own_addresses
from gateway.channels.email.intake import MailIntake
from gateway.channels.email.token import token_from_address
from gateway.config import EmailSettings, ImapSettings
from gateway.ports import QUARANTINE

__all__ = ["ImapError", "ImapReader", "MailIntake", "MailListener"]

log = logging.getLogger(__name__)

#: Seconds an IMAP command may take before the connection is considered dead.
IMAP_TIMEOUT = 30.0
#: Reconnect delays grow from 1 s to this cap while the server stays unreachable.
MAX_BACKOFF = 300.0
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapError(Exception):
    """The IMAP server refused something the reader needs (login, select, move)."""


class ImapReader:
    """Reads new mail from one IMAP folder with IDLE (or NOOP polling), then moves it away."""

    def __init__(
        self,
        settings: ImapSettings,
        intake: MailIntake,
        load_cursor: Callable[[str], Awaitable[str | None]],
    ) -> None:
        self.settings = settings
        self.intake = intake
        self.load_cursor = load_cursor
        self.cursor_name = f"imap:{settings.username}:{settings.folder}"
        #: Set while a session is selected and waiting for mail (tests and health checks).
        self.ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._selected = False

    async def run(self, stop: asyncio.Event) -> None:
        """Read until `stop` is set, reconnecting with exponential backoff."""
        delay = 1.0
        while not stop.is_set():
            self._selected = False
            try:
                await self._connected_session(stop)
            except (TimeoutError, OSError, aioimaplib.Abort, aioimaplib.Error, ImapError) as exc:
                log.warning("IMAP %s: %s: %s", self.settings.host, type(exc).__name__, exc)
            except Exception:
                # The engine failed (a database error); the mail stays in the folder.
                log.exception("IMAP %s: processing failed", self.settings.host)
            if stop.is_set():
                return
            delay = 1.0 if self._selected else min(MAX_BACKOFF, delay * 2)
            await _wait_any(stop, limit=delay)

    async def _connected_session(self, stop: asyncio.Event) -> None:
        """One connection's life. aioimaplib leaves a command waiting forever when the
        socket dies under it, so the session is cancelled as soon as the loss is seen."""
        imap = await self._connect()
        work = asyncio.ensure_future(self._session(imap, stop))
        try:
            await _wait_any(work, self._lost, limit=None)
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                raise ImapError("connection lost")
            work.result()
        finally:
            work.cancel()
            self.ready.clear()
            await _logout(imap, lost=self._lost.is_set())

    async def _connect(self) -> aioimaplib.IMAP4:
        s = self.settings
        self._lost.clear()
        context = ssl.create_default_context() if s.security == "tls" else None
        imap = aioimaplib.IMAP4(
            host=s.host,
            port=s.port,
            timeout=IMAP_TIMEOUT,
            conn_lost_cb=lambda exc: self._lost.set(),
            ssl_context=context,
        )
        try:
            await imap.wait_hello_from_server()
            if s.security == "starttls":
                await _starttls(imap, s.host)
            if "LOGINDISABLED" in imap.protocol.capabilities:
                # Sending LOGIN anyway would put the password on the wire in clear text.
                raise ImapError(
                    f"{s.host} requires TLS before login: set imap.security to"
                    f' "starttls" (port 143) or "tls" (port 993)'
                )
            response = await imap.login(s.username, s.password.get())
            if response.result != "OK":
                raise ImapError(f"login as {s.username} refused: {_text(response.lines)}")
        except BaseException:
            await _logout(imap, lost=True)  # close the socket, or every retry leaks one
            raise
        return imap

    async def _select(self, imap: aioimaplib.IMAP4) -> str:
        s = self.settings
        for folder in (s.processed_folder, s.shunt_folder):
            # LIST with an exact name (no wildcards) answers one line if the folder exists.
            listed = await imap.list('""', _quote(folder))
            if len(listed.lines) < 2:
                created = await imap.create(_quote(folder))
                if created.result != "OK" and b"ALREADYEXISTS" not in b"".join(created.lines):
                    raise ImapError(f"cannot create {folder}: {_text(created.lines)}")
        response = await imap.select(_quote(s.folder))
        if response.result != "OK":
            raise ImapError(f"cannot select {s.folder}: {_text(response.lines)}")
        found = next((m for line in response.lines if (m := _UIDVALIDITY.search(line))), None)
        if found is None:
            raise ImapError(f"{s.folder}: the server sent no UIDVALIDITY")
        return found.group(1).decode()

    async def _session(self, imap: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
        validity = await self._select(imap)
        self._selected = True
        while not stop.is_set():
            await self._drain(imap, validity)
            self.ready.set()
            await self._wait(imap, stop)

    async def _drain(self, imap: aioimaplib.IMAP4, validity: str) -> None:
        """Apply and move every mail in the folder, oldest first, until a search finds none.

        Mail that arrives while earlier mail is applied is announced in the answers to the
        FETCH and MOVE commands, not to an IDLE: searching again is what sees it now instead
        of at the next renewal of the IDLE (`poll_seconds`)."""
        while uids := await self._search(imap):
            saved = await self.load_cursor(self.cursor_name)
            last = 0
            if saved and saved.partition(":")[0] == validity:
                last = int(saved.partition(":")[2])
            for uid in uids:
                folder = self.settings.processed_folder
                # At or below the cursor: applied in an earlier session that died before moving.
                if uid > last:
                    size = await self._size(imap, uid)
                    if size is not None and size > self.settings.max_message_bytes:
                        await self._too_large(imap, uid, size, validity)
                    else:
                        raw = await self._fetch(imap, uid)
                        if raw is not None and not await self._apply(raw, validity, uid):
                            folder = self.settings.shunt_folder
                    last = uid
                await self._move(imap, uid, folder)

    async def _search(self, imap: aioimaplib.IMAP4) -> list[int]:
        response = await imap.uid_search("ALL", charset=None)
        if response.result != "OK":
            raise ImapError(f"search failed: {_text(response.lines)}")
        return sorted({int(t) for line in response.lines[:-1] for t in line.split() if t.isdigit()})

    async def _apply(self, raw: bytes, validity: str, uid: int) -> bool:
        """Apply one mail; False when it failed too often and was set aside instead.

        A failure propagates (the session reconnects and the mail is tried again) until the
        mail has failed `max_failures` times; then it is shunted, so one mail that always
        breaks the engine cannot hold up every mail behind it. Shunting needs the engine to
        commit the rejection: when the engine fails on everything (its database is gone),
        that fails as well and the mail stays where it is.
        """
        cursor = (self.cursor_name, f"{validity}:{uid}")
        taken = await self.intake.attempt(
            raw,
            cursor=cursor,
            place=self.settings.shunt_folder,
            max_failures=self.settings.max_failures,
        )
        return not taken.set_aside

    async def _size(self, imap: aioimaplib.IMAP4, uid: int) -> int | None:
        """The mail's size by the server, before fetching it (None: expunged meanwhile)."""
        response = await imap.uid("fetch", str(uid), "(RFC822.SIZE)")
        if response.result != "OK":
            raise ImapError(f"fetch {uid} size failed: {_text(response.lines)}")
        found = next((m for line in response.lines if (m := _SIZE.search(bytes(line)))), None)
        return int(found.group(1)) if found else None

    async def _too_large(self, imap: aioimaplib.IMAP4, uid: int, size: int, validity: str) -> None:
        """Only the header of a mail over `max_message_bytes` is fetched: enough to tell its
        sender why it was not read (the listener refuses such mail with 552 instead)."""
        response = await imap.uid("fetch", str(uid), "(BODY.PEEK[HEADER])")
        if response.result != "OK":
            raise ImapError(f"fetch {uid} header failed: {_text(response.lines)}")
        if len(response.lines) < 2 or not isinstance(response.lines[1], (bytes, bytearray)):
            return
        await self.intake.too_large(
            bytes(response.lines[1]),
            size=size,
            limit=self.settings.max_message_bytes,
            cursor=(self.cursor_name, f"{validity}:{uid}"),
        )

    async def _fetch(self, imap: aioimaplib.IMAP4, uid: int) -> bytes | None:
        # BODY.PEEK leaves \Seen alone: a person reading the mailbox still sees it as new.
        response = await imap.uid("fetch", str(uid), "(BODY.PEEK[])")
        if response.result != "OK":
            raise ImapError(f"fetch {uid} failed: {_text(response.lines)}")
        if len(response.lines) < 2 or not isinstance(response.lines[1], (bytes, bytearray)):
            return None  # expunged by someone else meanwhile
        return bytes(response.lines[1])

    async def _move(self, imap: aioimaplib.IMAP4, uid: int, folder: str) -> None:
        target = _quote(folder)
        if imap.has_capability("MOVE"):
            response = await imap.uid("move", str(uid), target)
        else:
            response = await imap.uid("copy", str(uid), target)
            if response.result == "OK":
                response = await imap.uid("store", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
            if response.result == "OK":
                response = await (
                    imap.uid("expunge", str(uid))
                    if imap.has_capability("UIDPLUS")
                    else imap.expunge()
                )
        if response.result != "OK":
            raise ImapError(f"moving {uid} to {folder}: {_text(response.lines)}")

    async def _wait(self, imap: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
        """Until the server reports a change, `poll_seconds` pass, or we are stopped.

        With IDLE Dovecot reports new mail about 0.5 s after delivery; the IDLE is renewed
        every `poll_seconds` anyway, which also keeps NAT gateways from dropping the socket.
        """
        timeout = self.settings.poll_seconds
        if not (self.settings.idle and imap.has_capability("IDLE")):
            await _wait_any(stop, limit=timeout)
            if not stop.is_set():
                await imap.noop()
            return
        idle = await imap.idle_start(timeout=timeout)
        push = asyncio.ensure_future(imap.wait_server_push(timeout=timeout + IMAP_TIMEOUT))
        try:
            await _wait_any(stop, push, limit=None)
        finally:
            push.cancel()
        imap.idle_done()
        await asyncio.wait_for(idle, IMAP_TIMEOUT)


class MailListener:
    """An SMTP or LMTP server for the gateway's address and its plus addresses.

    For self-hosters whose MX (or Postfix, via `lmtp:inet:…`) hands mail straight to the
    gateway. Other recipients are refused at RCPT with 550, so it is never an open relay.
    A mail the engine fails on is answered 451 so the MTA keeps it and retries; once the same
    mail has failed `max_failures` times it is accepted into the quarantine instead, because
    the MTA would otherwise retry it for days and then bounce it with nobody here told.
    """

    def __init__(self, settings: EmailSettings, intake: MailIntake) -> None:
        if settings.listener is None:
            raise ValueError("email.listener is not configured")
        self.listen = settings.listener
        self.intake = intake
        self.own = own_addresses(settings)
        self.hostname = settings.address.rpartition("@")[2]
        self.port = self.listen.port
        self._server: asyncio.base_events.Server | None = None
        #: Large mails being received or processed right now (see `admit`).
        self.large_in_flight = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server_class = _Lmtp if self.listen.protocol == "lmtp" else _Smtp
        self._server = await loop.create_server(
            lambda: server_class(
                self,
                hostname=self.hostname,
                decode_data=False,
                enable_SMTPUTF8=True,
                data_size_limit=self.listen.max_message_bytes,
            ),
            self.listen.host,
            self.listen.port,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def admit(self, mail_options: list[str]) -> tuple[int, bool] | None:
        """Whether a mail may send its DATA now: (its byte limit, whether it took a slot),
        or None for "later".

        aiosmtpd keeps a mail in memory while it arrives, and parsing costs a few times its
        size again, so eight 31 MiB mails at once took 800 MB. A large mail (by the SIZE the
        sender declared; one that declares none may be large) takes one of
        `max_concurrent_large` slots until it is processed; without a free slot it is
        answered 451 and its MTA retries, so nothing is lost. A small one never waits for a
        slot, but may then be at most twice the large threshold: a sender that declared a
        small size and sends a large mail is refused (RFC 1870 lets a server hold it to its
        declaration).
        """
        declared = _declared_size(mail_options)
        threshold = self.listen.large_message_bytes
        if declared is not None and declared <= threshold:
            return min(self.listen.max_message_bytes, 2 * threshold), False
        if self.large_in_flight >= self.listen.max_concurrent_large:
            return None
        self.large_in_flight += 1
        return self.listen.max_message_bytes, True

    def release(self) -> None:
        """A large mail `admit` let in is done (applied, refused or cut off)."""
        self.large_in_flight = max(0, self.large_in_flight - 1)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        lowered = address.strip().lower()
        if lowered not in self.own and token_from_address(lowered, self.own) is None:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
        try:
            taken = await self.intake.attempt(
                raw,
                recipients=envelope.rcpt_tos,
                place=QUARANTINE,
                max_failures=self.listen.max_failures,
            )
            reply = (
                f"250 2.0.0 OK: set aside for the organisers (#{taken.number})"
                if taken.set_aside
                else "250 2.0.0 OK: applied"
            )
        except Exception:
            # Not applied (the intake counted the failure if it was the mail's): a 4xx makes
            # the sending MTA keep the mail and retry.
            log.exception("listener: processing failed")
            reply = "451 4.3.0 Temporary failure, try again later"
        if isinstance(server, LMTP):
            # LMTP answers DATA once per accepted recipient (RFC 2033 section 4.2).
            return "\r\n".join([reply] * len(envelope.rcpt_tos))
        return reply


class _Replies(SMTP):
    """aiosmtpd's server with two fixes to the replies it makes up itself.

    An over-size mail (refused at MAIL by its SIZE, or during DATA) gets a 552 that says what
    the limit is: the sender's server quotes it in the bounce the sender reads. And over
    LMTP, a DATA refused by aiosmtpd itself (too big, a line too long) is answered once per
    recipient like any other: RFC 2033 section 4.2 wants that, and a client left waiting for
    the missing replies would time out and retry the mail forever.
    """

    _in_data = False

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        listener = self.event_handler
        admitted = None
        if isinstance(listener, MailListener) and self.envelope and self.envelope.rcpt_tos:
            admitted = listener.admit(self.envelope.mail_options)
            if admitted is None:
                # Refused before 354: one reply, also over LMTP (RFC 2033 section 4.2).
                await super().push(
                    "451 4.3.2 Too many large mails arriving at once, try again later"
                )
                return
        full_limit = self.data_size_limit
        if admitted is not None:
            self.data_size_limit = admitted[0]
        self._in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False
            self.data_size_limit = full_limit
            if admitted is not None and admitted[1] and isinstance(listener, MailListener):
                listener.release()

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if text.startswith(("552 Error: Too much mail data", "552 Error: message size exceeds")):
            limit = self.data_size_limit or 0
            log.warning("listener: refused a mail of more than %s bytes", limit)
            text = (
                f"552 5.3.4 Message too big for this gateway: at most {limit} bytes"
                " (attachments are not read anyway)"
            )
        recipients = len(self.envelope.rcpt_tos) if self.envelope is not None else 0
        if (
            self._in_data
            and isinstance(self, LMTP)
            and text.startswith(("4", "5"))
            and recipients > 1
            and "\r\n" not in text
        ):
            text = "\r\n".join([text] * recipients)
        await super().push(text)


class _Smtp(_Replies):
    pass


class _Lmtp(_Replies, LMTP):
    pass


def _declared_size(mail_options: list[str]) -> int | None:
    """The SIZE=n of MAIL FROM (RFC 1870), or None when the sender declared none."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


async def _wait_any(*things: asyncio.Event | asyncio.Future[Any], limit: float | None) -> None:
    """Until the first of `things` happens, or `limit` seconds pass."""
    tasks = [asyncio.ensure_future(t.wait()) if isinstance(t, asyncio.Event) else t for t in things]
    owned = [t for t, src in zip(tasks, things, strict=True) if isinstance(src, asyncio.Event)]
    try:
        await asyncio.wait(tasks, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()


async def _starttls(imap: aioimaplib.IMAP4, host: str) -> None:
    """Upgrade a plain connection. aioimaplib (up to 2.0.3 at least) knows the STARTTLS
    command but has no method for it, and its `simple_command` refuses it: send it through
    the protocol, then let asyncio wrap the socket in TLS under the same protocol object."""
    protocol = imap.protocol
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    response = await asyncio.wait_for(protocol.execute(command), IMAP_TIMEOUT)
    if response.result != "OK":
        raise ImapError(f"STARTTLS refused: {_text(response.lines)}")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, ssl.create_default_context(), server_hostname=host
    )
    await protocol.capability()  # capabilities may change after TLS (RFC 3501 6.2.1)


async def _logout(imap: aioimaplib.IMAP4, *, lost: bool) -> None:
    """Say goodbye if the connection is up; either way, close the socket."""
    if not lost:
        try:
            await asyncio.wait_for(imap.logout(), 5)
        except (TimeoutError, OSError, aioimaplib.Abort, aioimaplib.Error):
            pass
    transport = getattr(imap.protocol, "transport", None)
    if transport is not None:
        transport.close()


def _quote(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._/-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(lines: list[Any]) -> str:
    return " ".join(bytes(line).decode(errors="replace") for line in lines)[:300]

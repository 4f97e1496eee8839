"""An in-process SMTP server (aiosmtpd) that records what it is sent.

It runs in the *test's* event loop via ``loop.create_server`` rather than
aiosmtpd's threaded ``Controller``: the Controller cannot bind port 0, and
one loop means no cross-thread races when a test inspects ``messages``.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["ReceivedMessage", "SmtpSink"]


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    """The message exactly as received (CRLF line endings, dot-unstuffed)."""
    auth_login: str | None = None
    """The AUTH user the client authenticated as, if any."""
    mail_options: tuple[str, ...] = ()
    """The MAIL FROM parameters (SIZE=…, SMTPUTF8)."""


@dataclass
class _Failure:
    stage: str  # "MAIL", "RCPT" or "DATA"
    reply: str


@dataclass
class _Handler:
    sink: SmtpSink
    failures: deque[_Failure] = field(default_factory=deque)

    def _take(self, stage: str) -> str | None:
        if self.failures and self.failures[0].stage == stage:
            return self.failures.popleft().reply
        return None

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = self._take("MAIL")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._take("RCPT")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._take("DATA")
        if reply:
            self.sink.rejected += 1
            return reply
        auth = session.auth_data
        login = auth.login.decode(errors="replace") if isinstance(auth, LoginPassword) else None
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
        self.sink._record(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=raw,
                auth_login=login,
                mail_options=tuple(envelope.mail_options),
            )
        )
        return "250 2.0.0 Message accepted"


class SmtpSink:
    """SMTP sink on a loopback port, optionally failing or demanding AUTH.

    * ``fail_next(n, code)`` answers the next ``n`` messages with e.g. 451 (a
      transient error the sender must retry) or 550 (permanent: dead letter).
    * ``credentials={"user": "pass"}`` turns on AUTH PLAIN/LOGIN over plain
      text (no STARTTLS needed on loopback) and makes it mandatory; wrong
      credentials get 535.
    * ``smtputf8=False`` stops offering SMTPUTF8 (RFC 6531), as many servers do.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        credentials: dict[str, str] | None = None,
        hostname: str = "sink.test",
        port: int = 0,
        smtputf8: bool = True,
    ) -> None:
        self.credentials = credentials
        self.smtputf8 = smtputf8
        self.hostname = hostname
        self.port = port
        self.messages: list[ReceivedMessage] = []
        self.rejected = 0
        self.auth_attempts: list[tuple[str, bool]] = []
        self._handler = _Handler(self)
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[SMTP] = set()
        self._arrived = asyncio.Event()

    # -- behaviour knobs ------------------------------------------------------

    def fail_next(
        self, n: int = 1, code: int = 451, message: str | None = None, *, stage: str = "DATA"
    ) -> None:
        """Answer the next ``n`` transactions with ``code`` at ``stage``.

        ``stage`` is "MAIL", "RCPT" (one failure per recipient) or "DATA".
        """
        stage = stage.upper()
        if stage not in ("MAIL", "RCPT", "DATA"):
            raise ValueError(f"stage must be MAIL, RCPT or DATA, not {stage!r}")
        if message is None:
            message = (
                "4.3.0 Temporary failure, try again later"
                if 400 <= code < 500
                else "5.7.1 Message rejected"
            )
        for _ in range(n):
            self._handler.failures.append(_Failure(stage, f"{code} {message}"))

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = False
        login = ""
        if isinstance(auth_data, LoginPassword) and self.credentials is not None:
            login = auth_data.login.decode(errors="replace")
            ok = self.credentials.get(login) == auth_data.password.decode(errors="replace")
        self.auth_attempts.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    # -- lifecycle ------------------------------------------------------------

    def _make_protocol(self) -> SMTP:
        auth = self.credentials is not None
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate: loopback only, and it lets tests
            # see the credentials the gateway sends.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            proto = self._smtp(auth)
        self._connections.add(proto)
        return proto

    def _smtp(self, auth: bool) -> SMTP:
        return SMTP(
            self._handler,
            hostname=self.hostname,  # avoids a slow socket.getfqdn() per connection
            decode_data=False,
            enable_SMTPUTF8=self.smtputf8,
            auth_required=auth,
            auth_require_tls=False,
            authenticator=self._authenticate if auth else None,
        )

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._make_protocol, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for proto in list(self._connections):
            transport = getattr(proto, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
        self._connections.clear()
        await self._server.wait_closed()
        self._server = None
        await asyncio.sleep(0)  # let connection_lost callbacks run

    async def __aenter__(self) -> SmtpSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- results --------------------------------------------------------------

    def _record(self, message: ReceivedMessage) -> None:
        self.messages.append(message)
        self._arrived.set()

    # A timeout argument keeps test code short; it is applied with asyncio.timeout.
    async def wait_for(
        self,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages were accepted; return them all."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.messages)

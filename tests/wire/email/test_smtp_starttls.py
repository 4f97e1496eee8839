"""STARTTLS to a real aiosmtpd server with a certificate from a throwaway CA.

The transport verifies the server's certificate with the system's trust store (as a
provider's would be). The test trusts its throwaway CA (tests/servers/tls.py) through
SSL_CERT_FILE, so verification and hostname checks stay on.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.channels.email.send import EmailTransport
from gateway.config import SmtpSettings
from gateway.model import Channel, PersonId
from gateway.ports import TransientError
from tests.kit import email as kit
from tests.kit.outbox import outbox_item
from tests.servers.tls import certificate


class Sink:
    """Keeps each message with whether its session had switched to TLS."""

    def __init__(self) -> None:
        self.received: list[tuple[bool, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append((session.ssl is not None, bytes(envelope.original_content or b"")))
        return "250 OK"


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Sink, Path]]:
    """aiosmtpd on loopback that refuses mail until STARTTLS: (port, sink, CA file)."""
    ca, cert, key = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = Sink()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(sink, hostname="mx.example.test", tls_context=context, require_starttls=True),
        "127.0.0.1",
        0,
    )
    try:
        yield int(server.sockets[0].getsockname()[1]), sink, ca
    finally:
        server.close()
        await server.wait_closed()


def transport(port: int) -> EmailTransport:
    email = kit.settings("camp@example.test", smtp_port=port)
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="starttls", timeout=10)
    return EmailTransport(email.model_copy(update={"smtp": smtp}))


ITEM = outbox_item(
    idempotency_key="tls:1",
    channel=Channel.EMAIL,
    address="ana@example.net",
    person=PersonId(1),
    gathering="camp",
    flow="signup",
    subject="Camp",
    text="Hello over TLS",
)


async def test_starttls_with_a_verified_certificate(
    tls_server: tuple[int, Sink, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, sink, ca = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    sender = transport(port)
    try:
        await sender.send(ITEM)
        await sender.send(ITEM)  # the upgraded connection is reused
    finally:
        await sender.close()
    assert [tls for tls, _ in sink.received] == [True, True]
    assert b"Hello over TLS" in sink.received[0][1]
    assert sender.pool.connects == 1


async def test_an_untrusted_certificate_is_a_transient_failure(
    tls_server: tuple[int, Sink, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    port, sink, _ = tls_server
    (tmp_path / "other").mkdir()
    other_ca, _, _ = certificate(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    sender = transport(port)
    try:
        # Kept for a retry, not buried: fixing the trust store delivers the queue.
        with pytest.raises(TransientError):
            await sender.send(ITEM)
    finally:
        await sender.close()
    assert sink.received == []

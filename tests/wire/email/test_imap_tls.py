"""The IMAP reader over TLS against a real Dovecot with ``ssl = required``.

The server's certificate comes from a throwaway CA that the reader trusts through
SSL_CERT_FILE only, so chain and hostname checks stay on as against a provider. The server
listens on 127.0.0.2: there Dovecot treats the connection as remote and refuses LOGIN
without TLS (see the ``dovecot_tls`` fixture), so a login proves the session was encrypted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.email import receive as email_in
from gateway.channels.email.receive import ImapReader
from gateway.config import EmailSettings
from tests.kit import email as kit
from tests.servers import DovecotServer, MailUser, SmtpSink
from tests.servers.tls import certificate
from tests.wire.email.test_imap_reader import processed, reply, running


@pytest.fixture
def tls_box(dovecot_tls: DovecotServer) -> MailUser:
    return dovecot_tls.new_user()


def tls_settings(
    server: DovecotServer,
    box: MailUser,
    smtp_port: int,
    security: str,
) -> EmailSettings:
    port = server.imaps_port if security == "tls" else server.imap_port
    email = kit.settings(box.address, smtp_port=smtp_port, imap=(port, box.password))
    assert email.imap is not None
    imap = email.imap.model_copy(update={"host": server.host, "security": security})
    return email.model_copy(update={"imap": imap})


def log_since(server: DovecotServer, offset: int) -> str:
    return server.log_path.read_bytes()[offset:].decode(errors="replace")


def recorded_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the reader's reconnect delays and wait only a hundredth of each."""
    delays: list[float] = []
    real: Callable[..., Any] = email_in._wait_any

    async def quick(*things: Any, limit: float | None) -> None:
        if limit is not None and len(things) == 1 and isinstance(things[0], asyncio.Event):
            delays.append(limit)
            limit /= 100
        await real(*things, limit=limit)

    monkeypatch.setattr(email_in, "_wait_any", quick)
    return delays


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_reads_mail_over_tls_with_idle(
    dovecot_tls: DovecotServer,
    tls_box: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    security: str,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot_tls.ca_path))
    email = tls_settings(dovecot_tls, tls_box, smtp_sink.port, security)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        async with running(gw.reader()):
            await dovecot_tls.adeliver(
                tls_box.address, reply(tls_box.address, "<tls1@example.net>")
            )
            await kit.until(lambda: processed(dovecot_tls, tls_box, 1))
        inbox = await gw.rows("SELECT external_id, outcome FROM inbox")
    assert [(r["external_id"], r["outcome"]) for r in inbox] == [("<tls1@example.net>", "applied")]
    logins = [
        line
        for line in dovecot_tls.log_tail(400).splitlines()
        if f"Login: user=<{tls_box.address}>" in line
    ]
    assert logins and all(", TLS," in line for line in logins)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_an_untrusted_certificate_stops_before_login_and_backs_off(
    dovecot_tls: DovecotServer,
    tls_box: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    security: str,
) -> None:
    (tmp_path / "other").mkdir()
    other_ca, _, _ = certificate(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    delays = recorded_backoff(monkeypatch)
    email = tls_settings(dovecot_tls, tls_box, smtp_sink.port, security)
    offset = dovecot_tls.log_path.stat().st_size
    caplog.set_level(logging.WARNING)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        reader = gw.reader()
        stop = asyncio.Event()
        task = asyncio.create_task(reader.run(stop))
        await kit.until(lambda: _true(len(delays) >= 4))
        stop.set()
        await asyncio.wait_for(task, 15)
    assert not reader.ready.is_set()
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    failures = [r for r in caplog.records if r.name == email_in.__name__]
    assert len(failures) >= 4
    for record in failures:
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert "certificate verify failed" in record.getMessage()
    # Nothing else complained (no "Task exception was never retrieved", no asyncio traces).
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert f"user=<{tls_box.address}>" not in log_since(dovecot_tls, offset)


async def test_plain_imap_to_a_server_that_requires_tls_is_a_clear_error(
    dovecot_tls: DovecotServer,
    tls_box: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    delays = recorded_backoff(monkeypatch)
    email = tls_settings(dovecot_tls, tls_box, smtp_sink.port, "none")
    offset = dovecot_tls.log_path.stat().st_size
    caplog.set_level(logging.WARNING)
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        reader: ImapReader = gw.reader()
        stop = asyncio.Event()
        task = asyncio.create_task(reader.run(stop))
        await kit.until(lambda: _true(len(delays) >= 2))
        stop.set()
        await asyncio.wait_for(task, 15)
    assert not reader.ready.is_set()
    assert delays[:2] == [2.0, 4.0]
    messages = [r.getMessage() for r in caplog.records if r.name == email_in.__name__]
    assert messages and all("requires TLS" in m and "security" in m for m in messages)
    assert all(r.exc_info is None for r in caplog.records)
    # The reader hung up without sending its password in clear text.
    await kit.until(lambda: _true("no auth attempts" in log_since(dovecot_tls, offset)))
    assert f"user=<{tls_box.address}>" not in log_since(dovecot_tls, offset)


async def _true(value: bool) -> bool:
    return value

"""Smoke tests: every server fixture starts, answers, and behaves as documented."""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
import sys
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from aioimaplib import IMAP4

from tests.servers import (
    DovecotServer,
    MailUser,
    PostfixServer,
    SmtpSink,
    SynapseServer,
    free_port,
)

ROOT = Path(__file__).resolve().parents[2]
ClientFactory = Callable[..., Awaitable[Any]]  # the matrix_client fixture


def _message(to: str, subject: str, sender: str = "camp@gateway.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"body of {subject}\n")
    return msg


# -- ports -----------------------------------------------------------------------


def test_free_port_hands_out_distinct_ports() -> None:
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50


# -- Synapse ---------------------------------------------------------------------


async def test_synapse_user_can_send_and_sync(
    synapse: SynapseServer, matrix_client: ClientFactory
) -> None:
    alice = synapse.new_user("alice")
    user_id, token, device_id = alice  # unpacks like a plain tuple
    assert user_id.endswith(":localhost") and token and device_id

    client = await matrix_client(alice)
    whoami = await client.whoami()
    assert whoami.user_id == user_id
    room = await client.room_create(name="smoke")
    # With E2EE support loaded nio only sends to rooms it has synced.
    await client.sync(timeout=0)
    sent = await client.room_send(
        room.room_id, "m.room.message", {"msgtype": "m.text", "body": "hello"}
    )
    assert sent.event_id.startswith("$")
    sync = await client.sync(timeout=0, full_state=True)
    events = sync.rooms.join[room.room_id].timeline.events
    assert any(getattr(e, "body", None) == "hello" for e in events)


def test_synapse_admin_registration(synapse: SynapseServer) -> None:
    admin = synapse.register_user(f"admin_{os.getpid()}", admin=True)
    info = synapse.request(
        "GET", f"/_synapse/admin/v2/users/{admin.user_id}", token=admin.access_token
    )
    assert info["admin"] is True
    assert synapse.passwords[admin.user_id]


async def test_synapse_survives_kill_and_restart(
    synapse: SynapseServer, matrix_client: ClientFactory
) -> None:
    bob = synapse.new_user("bob")
    client = await matrix_client(bob)
    port = synapse.port
    synapse.stop(kill=True)
    # nio surfaces a refused connection as an exception, not as an ErrorResponse.
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.whoami()
    synapse.restart()
    assert synapse.port == port
    up = await client.whoami()
    assert up.user_id == bob.user_id  # same database: the token is still valid


async def test_rate_limited_synapse_reports_limit_exceeded(
    synapse_rate_limited: SynapseServer, matrix_client: ClientFactory
) -> None:
    from nio import RoomSendError

    user = synapse_rate_limited.new_user("burst")
    assert user.user_id.endswith(":limited.localhost")
    client = await matrix_client(user)
    room = await client.room_create()
    await client.sync(timeout=0)
    limited = None
    for i in range(40):
        resp = await client.room_send(
            room.room_id, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"}
        )
        if isinstance(resp, RoomSendError):
            limited = resp
            break
    assert limited is not None, "default rate limits never triggered"
    assert limited.status_code == "M_LIMIT_EXCEEDED"
    assert limited.retry_after_ms and limited.retry_after_ms > 0


# -- Dovecot ---------------------------------------------------------------------


async def test_dovecot_delivers_and_serves_imap(dovecot: DovecotServer, mailbox: MailUser) -> None:
    raw = _message(mailbox.address, "over lmtp").as_bytes()
    await dovecot.adeliver(mailbox.address, raw)
    stored = dovecot.mailbox_messages(mailbox.address)
    assert len(stored) == 1 and b"Subject: over lmtp" in stored[0]

    imap = IMAP4(host=dovecot.host, port=dovecot.imap_port, timeout=10)
    await imap.wait_hello_from_server()
    assert (await imap.login(mailbox.address, mailbox.password)).result == "OK"
    assert (await imap.select("INBOX")).result == "OK"
    search = await imap.search("ALL")
    assert search.lines[0].split() == [b"1"]
    await imap.logout()


def test_dovecot_mailboxes_are_isolated(dovecot: DovecotServer, mailbox: MailUser) -> None:
    other = dovecot.new_user()
    dovecot.deliver(other.address, _message(other.address, "not yours").as_bytes())
    assert dovecot.mailbox_messages(mailbox.address) == []
    assert len(dovecot.mailbox_messages(other.address)) == 1


def test_dovecot_refuses_unknown_user(dovecot: DovecotServer) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        dovecot.deliver("nobody@example.test", b"Subject: x\r\n\r\nx\r\n")


def test_dovecot_kill_and_restart_keeps_mail(dovecot: DovecotServer, mailbox: MailUser) -> None:
    dovecot.deliver(mailbox.address, _message(mailbox.address, "before").as_bytes())
    dovecot.kill()
    assert not dovecot.alive()
    with pytest.raises(OSError):
        dovecot.deliver(mailbox.address, _message(mailbox.address, "during").as_bytes())
    dovecot.restart()
    dovecot.deliver(mailbox.address, _message(mailbox.address, "after").as_bytes())
    subjects = [
        m.split(b"Subject: ")[1].split(b"\n")[0] for m in dovecot.mailbox_messages(mailbox.address)
    ]
    assert subjects == [b"before", b"after"]


def test_default_dovecot_user(dovecot: DovecotServer) -> None:
    import imaplib

    with imaplib.IMAP4(dovecot.host, dovecot.imap_port) as imap:
        assert imap.login("camp@example.test", "secret")[0] == "OK"


# -- Postfix ---------------------------------------------------------------------


async def test_postfix_relays_to_dovecot(
    postfix: PostfixServer, dovecot: DovecotServer, mailbox: MailUser
) -> None:
    await aiosmtplib.send(
        _message(mailbox.address, "via postfix"), hostname=postfix.host, port=postfix.smtp_port
    )
    messages = await asyncio.to_thread(dovecot.wait_for_messages, mailbox.address, 1)
    assert len(messages) == 1 and b"Subject: via postfix" in messages[0]
    assert b"by mx.gateway.test (Postfix)" in messages[0]


async def test_postfix_never_sends_mail_off_the_machine(postfix: PostfixServer) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await aiosmtplib.send(
            _message("someone@gmail.com", "escape"), hostname=postfix.host, port=postfix.smtp_port
        )


async def test_postfix_queues_while_dovecot_is_down(
    postfix: PostfixServer, dovecot: DovecotServer, mailbox: MailUser
) -> None:
    dovecot.kill()
    await aiosmtplib.send(
        _message(mailbox.address, "queued"), hostname=postfix.host, port=postfix.smtp_port
    )
    await asyncio.sleep(0.3)
    assert dovecot.mailbox_messages(mailbox.address) == []
    dovecot.restart()
    postfix.flush()
    messages = await asyncio.to_thread(dovecot.wait_for_messages, mailbox.address, 1)
    assert len(messages) == 1


# -- aiosmtpd sink ---------------------------------------------------------------


async def test_smtp_sink_records_messages(smtp_sink: SmtpSink) -> None:
    msg = _message("a@example.org", "sink")
    await aiosmtplib.send(
        msg,
        hostname=smtp_sink.host,
        port=smtp_sink.port,
        recipients=["a@example.org", "b@example.org"],
    )
    [got] = await smtp_sink.wait_for(1)
    assert got.mail_from == "camp@gateway.test"
    assert got.rcpt_tos == ["a@example.org", "b@example.org"]
    assert b"Subject: sink\r\n" in got.data
    assert got.auth_login is None


async def test_smtp_sink_scripted_failures(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(2, 451)
    smtp_sink.fail_next(1, 550)
    for expected in (451, 451, 550):
        with pytest.raises(aiosmtplib.SMTPDataError) as err:
            await aiosmtplib.send(
                _message("a@example.org", "x"), hostname=smtp_sink.host, port=smtp_sink.port
            )
        assert err.value.code == expected
    await aiosmtplib.send(
        _message("a@example.org", "finally"), hostname=smtp_sink.host, port=smtp_sink.port
    )
    assert [m.data.count(b"finally") > 0 for m in smtp_sink.messages] == [True]
    assert smtp_sink.rejected == 3

    smtp_sink.fail_next(1, 550, "5.1.1 no such user", stage="RCPT")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await aiosmtplib.send(
            _message("gone@example.org", "x"), hostname=smtp_sink.host, port=smtp_sink.port
        )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_smtp_sink_auth(smtp_sink: SmtpSink, mechanism: str) -> None:
    smtp_sink.credentials = {"gateway": "s3cret"}
    common: dict[str, Any] = dict(
        hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False, use_tls=False
    )
    with pytest.raises(aiosmtplib.SMTPException):  # AUTH is mandatory
        await aiosmtplib.send(_message("a@example.org", "anon"), **common)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        async with aiosmtplib.SMTP(**common) as smtp:
            await smtp.ehlo()
            await getattr(smtp, f"auth_{mechanism.lower()}")("gateway", "wrong")
    async with aiosmtplib.SMTP(**common) as smtp:
        await smtp.ehlo()
        await getattr(smtp, f"auth_{mechanism.lower()}")("gateway", "s3cret")
        await smtp.send_message(_message("a@example.org", "authed"))
    [got] = smtp_sink.messages
    assert got.auth_login == "gateway"
    assert ("gateway", False) in smtp_sink.auth_attempts


async def test_smtp_sink_is_per_test(smtp_sink: SmtpSink) -> None:
    assert smtp_sink.messages == [] and smtp_sink.credentials is None


# -- missing servers: skip locally, fail under CI --------------------------------


@pytest.mark.parametrize("ci, outcome", [("", "skipped"), ("true", "error")])
def test_missing_server_skips_or_fails(ci: str, outcome: str) -> None:
    env = dict(os.environ, DOVECOT_BIN="/nonexistent/dovecot", CI=ci)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rsE",
            "tests/servers/test_servers.py::test_default_dovecot_user",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"1 {outcome}" in proc.stdout, proc.stdout + proc.stderr
    assert "dovecot is not installed" in proc.stdout
    assert proc.returncode == (0 if outcome == "skipped" else 1)

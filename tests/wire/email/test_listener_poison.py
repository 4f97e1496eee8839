"""A mail that always fails on the SMTP/LMTP listener is set aside, not retried forever.

The sending MTA retries after each 451; the third failure of the same mail (counted in the
store, so retries in new connections and after a restart count too) is answered 250, the
mail kept in the quarantine and the organisers told once. An outage (the store locked) is
answered 451 however often it happens, and counts for nothing. Over-size mail gets 552.
Last, the same through a real Postfix delivering to the listener over LMTP.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.email.failures import set_aside_mail
from gateway.channels.email.inbound import token_maker
from gateway.channels.email.token import reply_address
from gateway.cli.main import main
from gateway.model import Identity, InboundKind, InboundMessage, PersonId
from gateway.ops.reports import format_status, status_report
from tests.kit import email as kit
from tests.kit.optional import unavailable
from tests.servers import PostfixServer, ServerUnavailable, SmtpSink

GATEWAY = "camp@example.test"
ORGANISER = Identity.email("mo@example.org", "Mo")
POISON = "<poison@example.net>"
GOOD = "<good@example.net>"


def mail(message_id: str | None, body: str = "1. Ana\r\n2. Soup") -> bytes:
    header = f"Message-ID: {message_id}\r\n" if message_id else ""
    return (
        f"From: ana@example.net\r\nTo: {GATEWAY}\r\nSubject: Camp\r\n{header}\r\n{body}\r\n"
    ).encode()


def deliver(port: int, raw: bytes, protocol: str = "lmtp") -> int:
    """One delivery in a new connection, as an MTA retry is: the reply code."""
    client = smtplib.LMTP if protocol == "lmtp" else smtplib.SMTP
    try:
        with client("127.0.0.1", port, timeout=10) as conn:
            conn.sendmail("ana@example.net", [GATEWAY], raw)
    except smtplib.SMTPDataError as exc:
        return exc.smtp_code
    return 250


def failing(gw: kit.Gateway, attempts: list[str], error: Callable[[], Exception]) -> None:
    """The engine raises `error` on the poison mail, except on the path recording it set
    aside (the engine's no-flow path, which works unless the engine is broken as a whole)."""
    real = gw.engine.handle

    async def handle(message: InboundMessage, **kwargs: Any) -> Any:
        attempts.append(f"{message.kind.value}:{message.external_id}")
        if message.external_id == POISON and message.kind != InboundKind.REJECTED:
            raise error()
        return await real(message, **kwargs)

    gw.engine.handle = handle  # type: ignore[method-assign]


def exploded() -> Exception:
    return RuntimeError("flow routing exploded")


async def set_aside_and_alerts(gw: kit.Gateway) -> tuple[list[Any], list[Any]]:
    quarantine = await gw.rows(
        "SELECT id, key, place, sender, attempts, reason, raw FROM mail_quarantine"
    )
    alerts = await gw.rows(
        "SELECT idempotency_key, payload FROM outbox WHERE address = ?", (ORGANISER.address,)
    )
    return quarantine, alerts


async def test_third_failure_is_accepted_quarantined_and_reported_once(
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="lmtp")
    async with kit.gateway(
        tmp_path / "gw.db", email, tmp_path / "t", organisers=(ORGANISER,)
    ) as gw:
        attempts: list[str] = []
        failing(gw, attempts, exploded)
        listener = gw.listener()
        await listener.start()
        try:
            codes = [
                await asyncio.to_thread(deliver, listener.port, mail(POISON)) for _ in range(4)
            ]
            good = await asyncio.to_thread(deliver, listener.port, mail(GOOD))
        finally:
            await listener.stop()
        # The fourth is a retry of a mail already set aside (its 250 lost on the way).
        assert codes == [451, 451, 250, 250] and good == 250
        assert attempts[:4] == [f"text:{POISON}"] * 3 + [f"rejected:{POISON}"]
        assert attempts[-1] == f"text:{GOOD}"
        inbox = await gw.rows(
            "SELECT external_id, outcome, person_id, detail FROM inbox ORDER BY id"
        )
        assert [(r["external_id"], r["outcome"]) for r in inbox] == [
            (POISON, "rejected"),
            (f"{POISON}/set-aside", "rejected"),
            (GOOD, "applied"),
        ]
        assert inbox[0]["person_id"] is None  # the record of the mail itself
        assert "quarantine #1" in inbox[0]["detail"]
        # The sender is told their mail was not read and that the organisers will look.
        told = await gw.rows("SELECT payload FROM outbox WHERE address = 'ana@example.net'")
        assert any("set aside for the organisers" in json.loads(r[0])["text"] for r in told)
        assert not any("exploded" in json.loads(r[0])["text"] for r in told)
        quarantine, alerts = await set_aside_and_alerts(gw)
        [entry] = quarantine
        assert (entry["id"], entry["key"], entry["place"], entry["sender"], entry["attempts"]) == (
            1,
            POISON,
            "quarantine",
            "ana@example.net",
            3,
        )
        assert entry["raw"] == mail(POISON)
        assert entry["reason"] == "RuntimeError: flow routing exploded"
        [alert] = alerts
        assert alert["idempotency_key"].startswith(f"mail_failed:{POISON}")
        text = json.loads(alert["payload"])["text"]
        assert "3 times" in text and "quarantine as number 1" in text
        assert "gateway mail inspect --quarantined 1" in text
        assert not await gw.rows("SELECT 1 FROM mail_failures")
        status = format_status(await status_report(gw.store, {}, set_aside=set_aside_mail))
        assert "mail set aside, unanswered: 1" in status
        assert "#1 " in status and 'from ana@example.net "Camp"' in status


def breaks_on(broken: bytes, real: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """The intake's `apply` failing on `broken` before the engine, as a parser bug would."""

    async def accept(raw: bytes, **kwargs: Any) -> Any:
        if raw == broken:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "invalid start byte")
        return await real(raw, **kwargs)

    return accept


async def test_failures_count_across_a_restart_and_without_a_message_id(
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="smtp")
    broken = mail(None, body="this one breaks the parser")
    for expected in ([451, 451], [250]):
        async with kit.gateway(
            tmp_path / "gw.db", email, tmp_path / "t", organisers=(ORGANISER,)
        ) as gw:
            gw.intake.apply = breaks_on(broken, gw.intake.apply)  # type: ignore[method-assign]
            listener = gw.listener()
            await listener.start()
            try:
                codes = [
                    await asyncio.to_thread(deliver, listener.port, broken, "smtp")
                    for _ in expected
                ]
            finally:
                await listener.stop()
            assert codes == expected
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        quarantine, _ = await set_aside_and_alerts(gw)
        [entry] = quarantine
        assert entry["key"].startswith("sha256:") and entry["attempts"] == 3
        rows = await gw.rows("SELECT external_id, outcome FROM inbox ORDER BY id")
        assert [tuple(r) for r in rows] == [
            (entry["key"], "rejected"),
            (f"{entry['key']}/set-aside", "rejected"),  # its sender is told
        ]


async def test_a_locked_store_is_an_outage_and_counts_for_nothing(
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="lmtp")
    async with kit.gateway(
        tmp_path / "gw.db", email, tmp_path / "t", organisers=(ORGANISER,)
    ) as gw:
        attempts: list[str] = []
        failing(gw, attempts, lambda: sqlite3.OperationalError("database is locked"))
        listener = gw.listener()
        await listener.start()
        try:
            codes = [
                await asyncio.to_thread(deliver, listener.port, mail(POISON)) for _ in range(5)
            ]
            assert codes == [451] * 5
            assert not await gw.rows("SELECT 1 FROM mail_failures")
            del gw.engine.handle  # the store is back: the class's own method again
            assert await asyncio.to_thread(deliver, listener.port, mail(POISON)) == 250
        finally:
            await listener.stop()
        [row] = await gw.rows("SELECT external_id, outcome FROM inbox")
        assert tuple(row) == (POISON, "applied")
        quarantine, alerts = await set_aside_and_alerts(gw)
        assert quarantine == [] and alerts == []


async def lmtp_session(port: int, lines: list[bytes], replies: int) -> list[bytes]:
    """Speak LMTP by hand (smtplib reads one reply to DATA, LMTP sends one per recipient)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: list[bytes] = []
    try:
        async with asyncio.timeout(10):
            await reader.readline()  # greeting
            for line in lines:
                writer.write(line)
            await writer.drain()
            while len(got) < replies:
                reply = await reader.readline()
                if not reply[3:4] == b"-":  # skip continuation lines of LHLO
                    got.append(reply.rstrip())
    finally:
        writer.close()
    return got


async def test_oversize_mail_gets_552_and_the_listener_goes_on(
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="lmtp")
    assert email.listener is not None
    email = email.model_copy(
        update={"listener": email.listener.model_copy(update={"max_message_bytes": 65536})}
    )
    big = mail("<big@example.net>", body=("x" * 70 + "\r\n") * 1200)
    plus = reply_address(GATEWAY, token_maker(email)(PersonId(1), f"{kit.GATHERING}/{kit.FLOW}"))
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        listener = gw.listener()
        await listener.start()
        try:
            # A client that reads SIZE is refused at MAIL FROM already.
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                await asyncio.to_thread(deliver, listener.port, big)
            assert refused.value.smtp_code == 552
            assert b"at most 65536 bytes" in refused.value.smtp_error
            # One that does not is refused after DATA, once per recipient (RFC 2033), and
            # the connection goes on with the next mail.
            replies = await lmtp_session(
                listener.port,
                [
                    b"LHLO mx.example.net\r\n",
                    b"MAIL FROM:<ana@example.net>\r\n",
                    f"RCPT TO:<{GATEWAY}>\r\n".encode(),
                    f"RCPT TO:<{plus}>\r\n".encode(),
                    b"DATA\r\n",
                    big + b".\r\n",
                    b"MAIL FROM:<ana@example.net>\r\n",
                    f"RCPT TO:<{GATEWAY}>\r\n".encode(),
                    b"DATA\r\n",
                    mail(GOOD) + b".\r\n",
                    b"QUIT\r\n",
                ],
                replies=12,
            )
        finally:
            await listener.stop()
        assert [r[:3] for r in replies] == [
            b"250",
            b"250",
            b"250",
            b"250",
            b"354",
            b"552",
            b"552",
            b"250",
            b"250",
            b"354",
            b"250",
            b"221",
        ]
        assert b"at most 65536 bytes" in replies[5]
        [row] = await gw.rows("SELECT external_id, outcome FROM inbox")
        assert tuple(row) == (GOOD, "applied")


async def test_cli_inspects_a_quarantined_mail(
    smtp_sink: SmtpSink,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="lmtp")
    async with kit.gateway(tmp_path / "gw.db", email, tmp_path / "t") as gw:
        failing(gw, [], exploded)
        listener = gw.listener()
        await listener.start()
        try:
            for _ in range(3):
                await asyncio.to_thread(deliver, listener.port, mail(POISON))
        finally:
            await listener.stop()
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[store]\npath = "gw.db"\n[email]\naddress = "camp@example.test"\n'
        'token_secret = { value = "test-token-secret" }\n'
    )
    assert (
        await asyncio.to_thread(main, ["mail", "inspect", "--quarantined", "1", "-c", str(config)])
        == 0
    )
    reading = json.loads(capsysbinary.readouterr().out)
    assert reading["external_id"] == POISON and reading["from"] == "ana@example.net"
    assert (
        await asyncio.to_thread(
            main, ["mail", "inspect", "--quarantined", "1", "--raw", "-c", str(config)]
        )
        == 0
    )
    assert capsysbinary.readouterr().out == mail(POISON)
    assert (
        await asyncio.to_thread(main, ["mail", "inspect", "--quarantined", "2", "-c", str(config)])
        == 2
    )


# -- through a real Postfix -----------------------------------------------------------


def postfix_or_skip() -> None:
    try:
        PostfixServer.check_available()
    except ServerUnavailable as exc:
        unavailable(str(exc))


def submit(postfix: PostfixServer, raw: bytes) -> None:
    with smtplib.SMTP(postfix.host, postfix.smtp_port, timeout=10) as conn:
        conn.sendmail("ana@example.net", [GATEWAY], raw)


def lmtp_results(postfix: PostfixServer) -> list[str]:
    """Postfix's own account of each delivery attempt to the listener, in order."""
    lines = (
        postfix.log_path.read_text(errors="replace").splitlines()
        if postfix.log_path.exists()
        else []
    )
    return [
        line.partition("status=")[2]
        for line in lines
        if "relay=127.0.0.1" in line and "status=" in line
    ]


@pytest.mark.mail
async def test_postfix_retries_a_poison_mail_until_it_is_set_aside(
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    postfix_or_skip()
    email = kit.settings(GATEWAY, smtp_port=smtp_sink.port, listener="lmtp")
    async with kit.gateway(
        tmp_path / "gw.db", email, tmp_path / "t", organisers=(ORGANISER,)
    ) as gw:
        attempts: list[str] = []
        failing(gw, attempts, exploded)
        listener = gw.listener()
        await listener.start()
        postfix = PostfixServer(listener.port)
        try:
            await asyncio.to_thread(postfix.start)
            await asyncio.to_thread(submit, postfix, mail(POISON))
            began = time.monotonic()

            async def set_aside() -> bool:
                # Postfix retries deferred mail every second or two; a flush now and then
                # only shortens the wait.
                if time.monotonic() - began > 3:
                    await asyncio.to_thread(postfix.flush)
                return bool(await gw.rows("SELECT 1 FROM mail_quarantine"))

            await kit.until(set_aside, limit=60, interval=0.5)
            await asyncio.to_thread(submit, postfix, mail(GOOD))

            async def delivered() -> bool:
                # The poison mail, the note to its sender, the good mail.
                return len(
                    await gw.rows("SELECT 1 FROM inbox")
                ) == 3 and not await asyncio.to_thread(postfix.queue_ids)

            await kit.until(delivered, limit=30, interval=0.2)
            results = lmtp_results(postfix)
        finally:
            await listener.stop()
            await asyncio.to_thread(postfix.cleanup)
        assert [r.split()[0] for r in results] == ["deferred", "deferred", "sent", "sent"]
        assert "451 4.3.0" in results[0] and "451 4.3.0" in results[1]
        assert "250 2.0.0 OK: set aside for the organisers (#1)" in results[2]
        assert "250 2.0.0 OK: applied" in results[3]
        told = f"rejected:{POISON}/set-aside"
        assert attempts == [f"text:{POISON}"] * 3 + [f"rejected:{POISON}", told, f"text:{GOOD}"]
        inbox = await gw.rows("SELECT external_id, outcome FROM inbox ORDER BY id")
        assert [tuple(r) for r in inbox] == [
            (POISON, "rejected"),
            (f"{POISON}/set-aside", "rejected"),
            (GOOD, "applied"),
        ]
        quarantine, alerts = await set_aside_and_alerts(gw)
        assert len(quarantine) == 1 and b"Message-ID: " + POISON.encode() in quarantine[0]["raw"]
        assert len(alerts) == 1

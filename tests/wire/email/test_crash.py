"""Killing the gateway (SIGKILL, a real process) while it receives mail loses nothing and
applies nothing twice."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from tests.servers import DovecotServer, MailUser, SmtpSink

ROOT = Path(__file__).resolve().parents[3]


def mail(n: int) -> bytes:
    return (
        f"From: p{n}@example.net\r\nTo: gw@example.test\r\nSubject: Camp\r\n"
        f"Message-ID: <crash-{n}@example.net>\r\n\r\nhello {n}\r\n"
    ).encode()


@asynccontextmanager
async def gateway(
    tmp: Path, box: MailUser, dovecot: DovecotServer, smtp_port: int, crash: str | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """The gateway process; on exit SIGTERM and wait, while this loop's SMTP sink serves
    the QUIT of its connections."""
    config = tmp / f"config-{time.monotonic_ns()}.json"
    config.write_text(
        json.dumps(
            {
                "db": str(tmp / "gw.db"),
                "templates": str(tmp / "templates"),
                "address": box.address,
                "password": box.password,
                "imap_port": dovecot.imap_port,
                "smtp_port": smtp_port,
                "crash": crash,
            }
        )
    )
    log = open(tmp / "gateway.log", "ab")  # noqa: ASYNC230 - instant, closed below
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting is instant; waits use a thread
        [sys.executable, "-m", "tests.kit.gateway_proc", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)
        log.close()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


async def wait(condition: Callable[[], bool], limit: float = 30.0) -> None:
    """Poll while the SMTP sink (in this event loop) keeps serving the gateway process."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - polls a database or maildir
            await asyncio.sleep(0.05)


def count(db: Path, sql: str) -> int:
    rows = query(db, sql)
    return int(str(rows[0][0])) if rows else 0


def seen_per_person(db: Path) -> list[int]:
    rows = query(db, "SELECT state FROM flow_runs WHERE person_id != 0 ORDER BY person_id")
    return [len(json.loads(str(r[0]))["seen"]) for r in rows]


async def test_killed_between_commit_and_move_applies_the_mail_once(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    async with gateway(tmp_path, mailbox, dovecot, smtp_sink.port, crash="after-commit") as proc:
        await dovecot.adeliver(mailbox.address, mail(1))
        assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
    # Committed, but still in the folder: the crash hit between the two.
    assert query(db, "SELECT external_id FROM inbox") == [("<crash-1@example.net>",)]
    assert len(dovecot.mailbox_messages(mailbox.address)) == 1
    assert dovecot.mailbox_messages(mailbox.address, "Processed") == []
    async with gateway(tmp_path, mailbox, dovecot, smtp_sink.port):
        await wait(lambda: len(dovecot.mailbox_messages(mailbox.address, "Processed")) == 1)
        await wait(lambda: query(db, "SELECT status FROM outbox") == [("sent",)])
    assert dovecot.mailbox_messages(mailbox.address) == []
    assert query(db, "SELECT COUNT(*) FROM inbox") == [(1,)]
    assert seen_per_person(db) == [1]


async def test_kill_9_in_the_middle_of_a_burst_loses_and_repeats_nothing(
    dovecot: DovecotServer,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    total = 40
    async with gateway(tmp_path, mailbox, dovecot, smtp_sink.port) as proc:
        for n in range(total):
            await dovecot.adeliver(mailbox.address, mail(n))
        await wait(lambda: count(db, "SELECT COUNT(*) FROM inbox") >= 5)
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)
    before = count(db, "SELECT COUNT(*) FROM inbox")
    async with gateway(tmp_path, mailbox, dovecot, smtp_sink.port):
        await wait(lambda: len(dovecot.mailbox_messages(mailbox.address, "Processed")) == total, 60)
        await wait(
            lambda: query(db, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'") == [(total,)], 60
        )
    assert dovecot.mailbox_messages(mailbox.address) == []
    assert query(db, "SELECT COUNT(*) FROM inbox") == [(total,)]
    assert seen_per_person(db) == [1] * total
    # Each person got exactly one answer, however many times the gateway was started.
    assert query(db, "SELECT COUNT(DISTINCT address) FROM outbox") == [(total,)]
    assert len(smtp_sink.messages) >= total
    print(f"killed after {before} of {total} mails")

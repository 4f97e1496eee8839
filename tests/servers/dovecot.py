"""A real Dovecot (IMAP + LMTP) on loopback with a throw-away configuration.

Dovecot runs with ``-F`` (foreground) as a direct child: in background mode
it daemonises away from us and leaves a stale pid file after a SIGKILL, which
then blocks the restart that outage tests need.
"""

from __future__ import annotations

import asyncio
import grp
import itertools
import os
import pwd
import re
import secrets
import shutil
import smtplib
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from .ports import free_port, wait_port_closed
from .process import (
    ChildProcess,
    ServerBase,
    ServerUnavailable,
    scratch_dir,
)
from .tls import certificate

__all__ = ["DovecotServer", "MailUser"]

_MAILDIR_NAME = re.compile(r"^(\d+)\.M(\d+)")


class MailUser(NamedTuple):
    """An IMAP login on the test Dovecot: address doubles as user name."""

    address: str
    password: str


class DovecotServer(ServerBase):
    """Dovecot with a passwd-file of PLAIN passwords and maildirs in a scratch dir.

    Each user gets a passwd-file of its own (``users.d/<address>``). One shared
    file would be re-read on change too, but Dovecot re-checks it at most once
    per second, so a user added right after a login or delivery would be
    "unknown" for up to a second; a file Dovecot has never opened has no such
    stale state. That is what lets ``new_user()`` hand out isolated mailboxes
    on the running server instantly.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        imap_port: int | None = None,
        lmtp_port: int | None = None,
        base_dir: Path | None = None,
        domain: str = "example.test",
        ssl: Literal["no", "yes", "required"] = "no",
        host: str = "127.0.0.1",
    ) -> None:
        #: Any 127.x address works on Linux. Dovecot counts a connection whose two ends
        #: share one address as secured and lets it log in without TLS even under
        #: ``ssl = required``; a client of 127.0.0.2 connects from 127.0.0.1, so only
        #: such a server refuses plain logins the way a remote one does.
        self.host = host
        self.users: dict[str, str] = dict(users or {})
        self.imap_port = imap_port or free_port()
        self.lmtp_port = lmtp_port or free_port()
        #: Dovecot's ``ssl`` setting. With TLS, the server presents a certificate for
        #: `host` from a throwaway CA (``ca_path``), offers STARTTLS on ``imap_port`` and
        #: implicit TLS on ``imaps_port``; "required" refuses to log in without TLS.
        self.ssl = ssl
        self.imaps_port = free_port() if ssl != "no" else 0
        self.domain = domain
        self._own_dir = base_dir is None
        self.base_dir = base_dir or scratch_dir("dovecot-")
        self.scratch = self.base_dir
        self.config_path = self.base_dir / "dovecot.conf"
        self.users_dir = self.base_dir / "users.d"
        self.mail_dir = self.base_dir / "mail"
        self.log_path = self.base_dir / "dovecot.log"
        self.stdout_path = self.base_dir / "dovecot.stdout"
        self.ca_path = self.base_dir / "ca.pem"
        self._process: ChildProcess | None = None
        self._counter = itertools.count(1)
        self.startup_seconds: float | None = None

    # -- availability / configuration -------------------------------------

    @staticmethod
    def binary() -> str:
        # DOVECOT_BIN points at a non-standard install (or, set to a missing
        # path, simulates a machine without Dovecot).
        override = os.environ.get("DOVECOT_BIN")
        if override:
            path = override if os.access(override, os.X_OK) else None
        else:
            path = shutil.which("dovecot") or (
                "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
            )
        if not path:
            raise ServerUnavailable(
                "dovecot is not installed (Debian: apt-get install dovecot-imapd dovecot-lmtpd)"
            )
        for part in ("lmtp", "imap"):
            if not Path(f"/usr/lib/dovecot/{part}").exists():
                raise ServerUnavailable(
                    f"dovecot-{part}d is not installed (apt-get install dovecot-{part}d)"
                )
        return path

    def _accounts(self) -> tuple[str, str, str, int]:
        """(service user, mail user, mail group, first_valid_uid).

        As root, Dovecot drops privileges to its packaged ``dovenull`` and
        ``dovecot`` users and stores mail as ``mail`` (uid 8): mail owned by
        uid 0 is refused (LMTP answers ``451 4.3.0``) and ``first_valid_uid``
        must admit uid 8. Without root every process and every mailbox runs
        as the invoking user and group (service user "" = keep defaults).
        """
        if os.geteuid() == 0:
            return "", "mail", "mail", 8
        me = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        return me, me, group, os.geteuid()

    def write_config(self) -> None:
        d = self.base_dir
        service_user, mail_user, mail_group, first_uid = self._accounts()
        unprivileged = login_chroot = ""
        if service_user:
            # Without root: no privilege drop to other users, and no chroot().
            unprivileged = (
                f"default_login_user = {service_user}\n"
                f"default_internal_user = {service_user}\n"
                f"default_internal_group = {mail_group}\n"
                "service anvil {\n  chroot =\n}\n"
            )
            login_chroot = "  chroot =\n"
        tls = ""
        if self.ssl != "no":
            _, cert, key = certificate(d, self.host)
            # "<path" makes Dovecot read the file (as root, before dropping privileges).
            tls = f"ssl_cert = <{cert}\nssl_key = <{key}\n"
        # One setting per line: Dovecot's parser does not accept settings
        # after an opening brace on the same line.
        config = f"""\
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap lmtp
listen = {self.host}
ssl = {self.ssl}
{tls}disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.mail_dir}/%u
mail_fsync = never
first_valid_uid = {first_uid}
{unprivileged}passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.users_dir}/%u
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={self.mail_dir}/%u
}}
service imap-login {{
{login_chroot}  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
"""
        self.config_path.write_text(config)
        for sub in ("run", "state"):
            (d / sub).mkdir(exist_ok=True)
        self.mail_dir.mkdir(exist_ok=True)
        # mkdtemp makes the dir 0700; the mail user must traverse it.
        os.chmod(d, 0o755)
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")
            os.chown(self.mail_dir, mail.pw_uid, mail.pw_gid)
        self._write_users()

    def _write_users(self) -> None:
        """Write one passwd-file per user, atomically."""
        self.users_dir.mkdir(exist_ok=True)
        for address, password in self.users.items():
            if "/" in address or address.startswith("."):
                raise ValueError(f"unusable test address: {address!r}")
            target = self.users_dir / address
            line = f"{address}:{{PLAIN}}{password}\n"
            if target.exists() and target.read_text() == line:
                continue
            tmp = target.with_name(f".{address}.tmp")
            tmp.write_text(line)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)

    # -- lifecycle ----------------------------------------------------------

    def start(self, timeout: float = 20.0) -> DovecotServer:
        """Start and block until IMAP greets ``* OK`` and LMTP greets ``220``."""
        if self._process and self._process.alive():
            return self
        binary = self.binary()
        if not self.config_path.exists():
            self.write_config()
        # A master.pid left by a SIGKILLed run would make Dovecot refuse to start
        # if its pid has been reused meanwhile.
        (self.base_dir / "run" / "master.pid").unlink(missing_ok=True)
        self._process = ChildProcess(
            [binary, "-F", "-c", str(self.config_path)],
            log_path=self.stdout_path,
            cwd=self.base_dir,
        )
        self._launch("Dovecot", [(self.imap_port, b"* OK"), (self.lmtp_port, b"220")], timeout)
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self._process:
            self._process.stop(kill=kill)
            # Killed group members may linger as zombies until init reaps them,
            # but their sockets close at exit: wait for that, not for reaping.
            for port in (self.imap_port, self.imaps_port, self.lmtp_port):
                if port:
                    wait_port_closed(self.host, port, timeout=5.0)

    def kill(self) -> None:
        """SIGKILL the whole server, as a crash or network outage would."""
        self.stop(kill=True)

    def restart(self) -> None:
        """Start again (same ports, same mail) after ``kill()`` or ``stop()``."""
        self.stop(kill=True)
        self.start()

    # -- users and mail -------------------------------------------------------

    def add_user(self, address: str, password: str) -> MailUser:
        self.users[address] = password
        self._write_users()
        return MailUser(address, password)

    def new_user(self, prefix: str = "user") -> MailUser:
        """A fresh, empty mailbox, so tests never see each other's mail."""
        address = f"{prefix}{next(self._counter)}-{secrets.token_hex(3)}@{self.domain}"
        return self.add_user(address, secrets.token_urlsafe(9))

    def deliver(
        self,
        rcpt: str | Iterable[str],
        raw: bytes,
        *,
        mail_from: str = "sender@example.org",
    ) -> None:
        """Deliver a message straight into mailboxes over LMTP (blocking).

        Uses the stdlib's LMTP client: unlike an SMTP client it sends LHLO
        and reads one reply per recipient. Raises if any recipient refused.
        """
        rcpts = [rcpt] if isinstance(rcpt, str) else list(rcpt)
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=30) as lmtp:
            refused = lmtp.sendmail(mail_from, rcpts, raw)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)

    async def adeliver(
        self,
        rcpt: str | Iterable[str],
        raw: bytes,
        *,
        mail_from: str = "sender@example.org",
    ) -> None:
        """``deliver`` from async code without blocking the event loop."""
        await asyncio.to_thread(self.deliver, rcpt, raw, mail_from=mail_from)

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """Maildir++ path: INBOX is the root, other folders are ``.Name``."""
        root = self.mail_dir / user
        return root if folder.upper() == "INBOX" else root / f".{folder}"

    def mailbox_messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Raw messages in a folder, oldest first, read straight from disk.

        Reading the maildir instead of IMAP keeps assertions independent of
        the IMAP code under test and leaves \\Seen flags untouched. Both
        ``new/`` (not yet seen by any IMAP session) and ``cur/`` are read.
        Maildir stores lines with LF endings, plus the Return-Path,
        Delivered-To and Received headers Dovecot adds on delivery.
        """
        box = self.maildir(user, folder)
        files: list[Path] = []
        for sub in ("new", "cur"):
            if (box / sub).is_dir():
                files.extend(p for p in (box / sub).iterdir() if p.is_file())

        def order(p: Path) -> tuple[int, int, str]:
            # Dovecot names files "<seconds>.M<microseconds>P<pid>.<host>,...".
            m = _MAILDIR_NAME.match(p.name)
            return (int(m[1]), int(m[2]), p.name) if m else (0, 0, p.name)

        return [p.read_bytes() for p in sorted(files, key=order)]

    def wait_for_messages(
        self, user: str, count: int = 1, folder: str = "INBOX", timeout: float = 10.0
    ) -> list[bytes]:
        """Poll the maildir until ``count`` messages are there (for relayed mail)."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.mailbox_messages(user, folder)
            if len(messages) >= count or time.monotonic() > deadline:
                return messages
            time.sleep(0.02)

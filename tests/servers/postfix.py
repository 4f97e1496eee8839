"""A real Postfix on loopback relaying test domains to Dovecot over LMTP.

Postfix normally lives in /etc/postfix under systemd. Here every instance has
a config, queue and data directory of its own, and its ``master`` runs with
``-d`` (stay in the foreground) as our child in a new session, so stopping the
process group stops smtpd, qmgr, lmtp and the rest with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .ports import free_port, wait_port_closed
from .process import (
    ChildProcess,
    ServerBase,
    ServerStartError,
    ServerUnavailable,
    scratch_dir,
    tail,
)

__all__ = ["PostfixServer"]

MASTER = Path("/usr/lib/postfix/sbin/master")

# chroot is off ("n" in the 5th column) for every service: a chroot would need
# copies of /etc files inside the scratch queue directory.
_MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


class PostfixServer(ServerBase):
    """Postfix accepting SMTP on loopback and relaying ``relay_domains`` via LMTP.

    Mail for any other domain is refused at RCPT (relay access denied) when
    the client is not on loopback, and bounced by the ``error`` transport
    otherwise: nothing can leave the machine.

    Deferred mail is retried every second (instead of minutes), so tests that
    kill Dovecot and bring it back see the queued mail arrive quickly; call
    ``flush()`` to retry at once.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        lmtp_port: int,
        smtp_port: int | None = None,
        *,
        relay_domains: Sequence[str] = ("example.test",),
        lmtp_host: str = "127.0.0.1",
        myhostname: str = "mx.gateway.test",
        base_dir: Path | None = None,
    ) -> None:
        self.lmtp_port = lmtp_port
        self.lmtp_host = lmtp_host
        self.smtp_port = smtp_port or free_port()
        self.relay_domains = list(relay_domains)
        self.myhostname = myhostname
        self._own_dir = base_dir is None
        self.base_dir = base_dir or scratch_dir("postfix-")
        self.scratch = self.base_dir
        self.config_dir = self.base_dir / "conf"
        self.queue_dir = self.base_dir / "queue"
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postfix.log"
        self.stdout_path = self.base_dir / "master.stdout"
        self._process: ChildProcess | None = None
        self.startup_seconds: float | None = None

    @staticmethod
    def check_available() -> str:
        """Return the ``postfix`` binary or raise ServerUnavailable."""
        binary = shutil.which("postfix") or (
            "/usr/sbin/postfix" if os.path.exists("/usr/sbin/postfix") else None
        )
        if not binary or not MASTER.exists():
            raise ServerUnavailable(
                "postfix is not installed (Debian: apt-get install --no-install-recommends postfix)"
            )
        if os.geteuid() != 0:
            raise ServerUnavailable("postfix's master must run as root (it drops to 'postfix')")
        return binary

    def write_config(self) -> None:
        d = self.base_dir
        os.chmod(d, 0o755)  # postfix checks that the queue's parents are root-owned/traversable
        self.config_dir.mkdir(exist_ok=True)
        # The queue directory must exist and be owned by root; `postfix check`
        # creates its subdirectories with the right owners.
        self.queue_dir.mkdir(exist_ok=True)
        main_cf = f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.myhostname}
myorigin = $myhostname
mydestination =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {", ".join(self.relay_domains)}
relay_recipient_maps =
relay_transport = lmtp:inet:{self.lmtp_host}:{self.lmtp_port}
default_transport = error:outbound mail disabled in tests
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
biff = no
smtputf8_enable = yes
lmtp_host_lookup = native
smtp_host_lookup = native
# No syslog here (no /dev/log): log to a file of our own, via postlogd.
maillog_file = {self.log_path}
maillog_file_prefixes = {d}
# Retry deferred mail within about a second, not minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_connect_timeout = 5s
"""
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(smtp_port=self.smtp_port))
        # Postfix re-reads a main.cf modified within the last second until it
        # stops changing (~1.5 s of sleeping on every first start); backdate it.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (past, past))

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.check_available(), "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, timeout: float = 20.0) -> PostfixServer:
        """``postfix check`` once, then run master in the foreground; wait for 220.

        Without /dev/log Postfix fails silently at times; its maillog file and
        master's own output are both in the error message.
        """
        if self._process and self._process.alive():
            return self
        self.check_available()
        if not (self.config_dir / "main.cf").exists():
            self.write_config()
            check = self._postfix("check")
            if check.returncode != 0:
                raise ServerStartError(
                    f"postfix -c {self.config_dir} check failed ({check.returncode}):\n"
                    f"{check.stdout}{check.stderr}\n--- {self.log_path}:\n{tail(self.log_path)}"
                )
        # master refuses to start while queue/pid/master.pid names a live pid.
        (self.queue_dir / "pid" / "master.pid").unlink(missing_ok=True)
        self._process = ChildProcess(
            [str(MASTER), "-c", str(self.config_dir), "-d"],
            log_path=self.stdout_path,
            cwd=self.base_dir,
        )
        self._launch("Postfix", [(self.smtp_port, b"220")], timeout)
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self._process:
            self._process.stop(kill=kill)
            wait_port_closed(self.host, self.smtp_port, timeout=5.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        """Retry all deferred mail now (``postqueue -f``)."""
        postqueue = shutil.which("postqueue") or "/usr/sbin/postqueue"
        subprocess.run(
            [postqueue, "-c", str(self.config_dir), "-f"],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def queue_ids(self) -> list[str]:
        """Queue ids of mail still in Postfix's queues (empty once all is delivered)."""
        ids: list[str] = []
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            root = self.queue_dir / sub
            if root.is_dir():
                ids.extend(p.name for p in root.rglob("*") if p.is_file())
        return ids

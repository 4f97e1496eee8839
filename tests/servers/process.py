"""Child-process plumbing shared by the test servers.

Every server runs as a direct child in a session (and so a process group) of
its own. That gives one handle, the group, through which the server *and*
everything it forked (Dovecot's imap/lmtp/auth processes, Postfix's smtpd,
qmgr, ...) can be signalled at once, and keeps terminal signals such as
Ctrl-C at the pytest console from reaching the servers before our own
teardown does.

Three layers make sure nothing survives the test run:

* the owner's ``stop()`` (pytest finalizers call it, also after a failing test);
* an ``atexit`` hook that kills every group still registered here;
* where ``setpriv`` exists, ``PR_SET_PDEATHSIG=KILL`` on the group leader, so
  even a SIGKILLed pytest does not leave a homeserver behind. Dovecot's and
  Postfix's own children exit when their master dies.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

__all__ = [
    "ChildProcess",
    "ServerStartError",
    "ServerUnavailable",
    "install_sigterm_cleanup",
    "kill_all_children",
    "scratch_dir",
    "tail",
]


class ServerUnavailable(RuntimeError):
    """The server cannot run on this machine at all (binary missing, not root).

    Fixtures turn this into a skip for developers and a failure under CI.
    """


class ServerStartError(RuntimeError):
    """The server is installed but did not come up; always a test failure."""


_LIVE: dict[int, ChildProcess] = {}
_LIVE_LOCK = threading.Lock()


def tail(path: Path, lines: int = 60) -> str:
    """Last ``lines`` lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def scratch_dir(prefix: str) -> Path:
    """A fresh private directory, on tmpfs when the machine has one.

    ``/dev/shm`` is memory-backed: SQLite commits and maildir writes do not
    wait for a disk, which roughly halves Synapse's send->sync round trip
    and keeps test timing independent of the disk under CI.
    """
    import tempfile

    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


class ChildProcess:
    """One server process (group) with its output going to a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"already running: {self.argv[0]} (pid {self.pid})")
        argv = self.argv
        # PDEATHSIG fires when the *thread* that forked exits, so only ask for
        # it from the main thread; a restart() called from a worker thread
        # would otherwise kill its server as soon as that worker retires.
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with _LIVE_LOCK:
            _LIVE[self.popen.pid] = self

    def _signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL with ``kill=True``) the whole group and reap it.

        Falls back to SIGKILL after ``timeout``. A final SIGKILL to the group
        catches any grandchild that outlived its master.
        """
        popen = self.popen
        if popen is None:
            return
        if popen.poll() is None:
            self._signal_group(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                popen.wait(timeout=10)
        self._signal_group(signal.SIGKILL)
        with _LIVE_LOCK:
            _LIVE.pop(popen.pid, None)


def kill_all_children() -> None:
    """SIGKILL every server group still registered; safe to call repeatedly."""
    with _LIVE_LOCK:
        children = list(_LIVE.values())
    for child in children:
        child.stop(kill=True, timeout=5)


atexit.register(kill_all_children)


def install_sigterm_cleanup() -> None:
    """Kill the servers when this process is SIGTERMed (CI timeouts do that).

    ``atexit`` does not run on a deadly signal, so without this a cancelled CI
    job would leave servers holding ports. Only installed over the default
    disposition, to respect a handler someone else already chose.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _handler(signum: int, frame: FrameType | None) -> None:
        kill_all_children()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, _handler)

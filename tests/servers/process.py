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
* a watchdog per server: a tiny process that holds the read end of a pipe
  whose write end only this process has. When this process dies in any way,
  even by SIGKILL, the pipe reaches EOF and the watchdog kills the server's
  group. (``PR_SET_PDEATHSIG`` is not enough: Postfix's master changes its
  credentials at startup, which clears it.)
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Self

from .ports import GreetingTimeout, wait_for_greeting

__all__ = [
    "ChildProcess",
    "ServerStartError",
    "ServerUnavailable",
    "install_sigterm_cleanup",
    "kill_all_children",
    "scratch_dir",
    "sweep_stale_scratch",
    "tail",
]


class ServerUnavailable(RuntimeError):
    """The server cannot run on this machine at all (binary missing, not root).

    Fixtures turn this into a skip for developers and a failure under CI.
    """


class ServerStartError(RuntimeError):
    """The server is installed but did not come up; always a test failure."""


# Runs in a separate interpreter: blocks until the pipe from the test process
# yields a byte (disarmed) or EOF (that process died), then kills the group.
_WATCHDOG = """
import os, signal, sys
if not sys.stdin.buffer.read(1):
    try:
        os.killpg(int(sys.argv[1]), signal.SIGKILL)
    except OSError:
        pass
"""

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

    path = Path(tempfile.mkdtemp(prefix=_SCRATCH_PREFIX + prefix, dir=_scratch_base()))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    return path


_SCRATCH_PREFIX = "gw-"
_OWNER_FILE = ".owner-pid"


def _scratch_base() -> Path | None:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def sweep_stale_scratch() -> None:
    """Delete scratch dirs left by test processes that were killed outright.

    tmpfs is RAM: Synapse databases of SIGKILLed runs would pile up there.
    A dir is stale when the process recorded in it no longer exists.
    """
    import tempfile

    base = _scratch_base() or Path(tempfile.gettempdir())
    for path in base.glob(_SCRATCH_PREFIX + "*"):
        try:
            owner = int((path / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


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
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_pipe: int | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"already running: {self.argv[0]} (pid {self.pid})")
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with _LIVE_LOCK:
            _LIVE[self.popen.pid] = self
        self._start_watchdog(self.popen.pid)

    def _start_watchdog(self, pgid: int) -> None:
        read_end, write_end = os.pipe()  # both non-inheritable by default
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C at the console must not disarm it
            )
        finally:
            os.close(read_end)
        self._watchdog_pipe = write_end

    def _stop_watchdog(self) -> None:
        """Disarm: one byte means "stopped on purpose, do not kill"."""
        if self._watchdog_pipe is not None:
            try:
                os.write(self._watchdog_pipe, b"q")
            except OSError:
                pass
            os.close(self._watchdog_pipe)
            self._watchdog_pipe = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None

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
        self._stop_watchdog()
        with _LIVE_LOCK:
            _LIVE.pop(popen.pid, None)


class ServerBase:
    """What every test server shares: liveness, log tail, cleanup of its scratch directory,
    and use as a context manager. Subclasses set these attributes and `start`/`stop`."""

    _process: ChildProcess | None
    _own_dir: bool
    #: The directory the server owns (deleted by `cleanup` when this object created it).
    scratch: Path
    log_path: Path
    #: The daemon's own stdout/stderr, besides its log file.
    stdout_path: Path
    host: str
    startup_seconds: float | None

    def start(self) -> Self:
        raise NotImplementedError

    def _launch(self, name: str, greetings: Sequence[tuple[int, bytes]], timeout: float) -> None:
        """Start `_process` and wait until each (port, banner) greets. A server that does not
        come up is killed and reported with the tails of its output and its log."""
        assert self._process is not None
        began = time.monotonic()
        self._process.start()
        try:
            for port, banner in greetings:
                remaining = max(1.0, timeout - (time.monotonic() - began))
                wait_for_greeting(self.host, port, banner, remaining, alive=self._process.alive)
        except GreetingTimeout as exc:
            self._process.stop(kill=True)
            raise ServerStartError(
                f"{name} did not come up: {exc}\n--- {self.stdout_path}:\n"
                f"{tail(self.stdout_path)}\n--- {self.log_path}:\n{tail(self.log_path)}"
            ) from exc
        self.startup_seconds = time.monotonic() - began

    def stop(self, *, kill: bool = False) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        return bool(self._process and self._process.alive())

    def cleanup(self) -> None:
        """Stop and delete the scratch directory (if this object created it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


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

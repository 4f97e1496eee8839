"""Loopback port helpers shared by every test server.

Ports are picked *below* the kernel's ephemeral range on purpose: a port the
kernel hands out for ``bind(("127.0.0.1", 0))`` lies inside that range, so in
the gap between our probe and the server's own ``bind`` an unrelated outgoing
connection may take it as its source port. Ports below the range are only ever
taken by explicit listeners, which makes the probe far more trustworthy.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["GreetingTimeout", "free_port", "read_greeting", "wait_for_greeting", "wait_port_closed"]

_LOW_FALLBACK = 32768
_handed_out: set[int] = set()
_lock = threading.Lock()


class GreetingTimeout(TimeoutError):
    """The port never answered with the expected greeting in time."""


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _LOW_FALLBACK


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Return a loopback TCP port that is free now and not handed out before.

    Remembering handed-out ports matters when several servers are configured
    before any of them binds (e.g. Dovecot's IMAP and LMTP ports).
    """
    high = _ephemeral_low() - 1
    low = min(20000, high - 1000)
    with _lock:
        for _ in range(200):
            port = random.randint(low, high)
            if port not in _handed_out and _can_bind(port):
                _handed_out.add(port)
                return port
    # Fall back to the kernel's choice rather than failing outright.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with _lock:
        _handed_out.add(port)
    return port


def read_greeting(host: str, port: int, timeout: float = 1.0) -> bytes:
    """Connect once and return the first line the server sends (may be b"")."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        return data.split(b"\n", 1)[0]


def wait_for_greeting(
    host: str,
    port: int,
    prefix: bytes,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.02,
) -> float:
    """Poll until ``host:port`` greets with a line starting with ``prefix``.

    An open port is not a ready server: Dovecot and Postfix accept
    connections before their login/smtpd processes can answer, so readiness is
    defined by the protocol greeting (``* OK`` for IMAP, ``220`` for SMTP/LMTP).
    ``alive`` lets the caller abort early when the server process has died.
    Returns the seconds waited.
    """
    start = time.monotonic()
    deadline = start + timeout
    last = b""
    while True:
        if alive is not None and not alive():
            raise GreetingTimeout(f"{host}:{port}: server process exited before greeting")
        try:
            per_try = max(0.2, min(1.0, deadline - time.monotonic()))
            last = read_greeting(host, port, timeout=per_try)
            if last.startswith(prefix):
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise GreetingTimeout(
                f"{host}:{port}: no {prefix!r} greeting within {timeout:.1f}s (last: {last!r})"
            )
        time.sleep(interval)


def wait_port_closed(host: str, port: int, timeout: float) -> bool:
    """Wait until nothing accepts connections on ``host:port`` any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                pass
        except OSError:
            return True
        time.sleep(0.01)
    return False

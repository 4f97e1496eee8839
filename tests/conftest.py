"""Fixtures that start real servers on loopback (see tests/servers/).

Session-scoped servers start lazily, on first use by a test, and are torn
down at the end of the session (plus an atexit/SIGTERM safety net). Without
the server binaries a test that needs them is skipped, unless ``CI`` is set:
then it fails, so a CI machine that lost a package cannot pass by skipping.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from hypothesis import settings as hypothesis_settings

# In CI, property tests replay a fixed set of examples: a submission is judged on what it
# changed, not on a new corner case a random draw happened to find that day. Developers'
# runs stay random and keep finding such cases (and the example database replays them).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# The servers package is imported as ``tests.servers`` (as bench/ scripts do),
# which needs the repository root on sys.path also under a bare `pytest`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.kit.optional import unavailable  # noqa: E402
from tests.servers import (  # noqa: E402
    DovecotServer,
    MailUser,
    MatrixUser,
    PostfixServer,
    ServerStartError,
    ServerUnavailable,
    SmtpSink,
    SynapseServer,
    install_sigterm_cleanup,
    kill_all_children,
    sweep_stale_scratch,
)

_SERVER_FIXTURES = ("synapse", "synapse_rate_limited", "dovecot", "dovecot_tls", "postfix")
_MARKS = {
    "synapse": "synapse",
    "synapse_rate_limited": "synapse",
    "matrix_client": "synapse",
    "dovecot": "mail",
    "dovecot_tls": "mail",
    "mailbox": "mail",
    "postfix": "mail",
}


class _Server(Protocol):
    def start(self) -> Any: ...
    def cleanup(self) -> None: ...
    def alive(self) -> bool: ...


S = TypeVar("S", bound=_Server)


def _serve(make: Callable[[], S]) -> Iterator[S]:
    """Start a server for a fixture, mapping "cannot run here" to skip/fail."""
    server: S | None = None
    try:
        server = make()
        server.start()
    except ServerUnavailable as exc:
        if server is not None:
            server.cleanup()
        unavailable(str(exc))
    except ServerStartError as exc:
        if server is not None:
            server.cleanup()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.cleanup()


# -- hooks ---------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    install_sigterm_cleanup()
    sweep_stale_scratch()


_EXIT_STATUS = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _EXIT_STATUS
    _EXIT_STATUS = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    kill_all_children()
    # A test that failed before closing its store leaves aiosqlite's worker thread running,
    # and the interpreter would wait for it forever: CI would hang instead of reporting the
    # failure. Leave with pytest's own status instead.
    left = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if left:
        print(
            f"\n{len(left)} thread(s) left running by tests (an unclosed store?); exiting",
            file=sys.stderr,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the servers they use, so ``-m "not synapse"`` works."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for mark in {m for f, m in _MARKS.items() if f in names}:
            item.add_marker(mark)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of each server's log to the report of a failed test."""
    report: pytest.TestReport = yield
    if report.failed and call.when in ("setup", "call"):
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        for name in _SERVER_FIXTURES:
            server = funcargs.get(name)
            if server is not None and hasattr(server, "log_tail"):
                report.sections.append(
                    (f"{name} log (tail of {server.log_path})", server.log_tail(40))
                )
    return report


@pytest.fixture(autouse=True)
def _revive_crashed_servers(request: pytest.FixtureRequest) -> None:
    """Bring back a shared server that an earlier outage test left dead.

    Only touches servers this test asks for, so unit tests start nothing.
    """
    for name in _SERVER_FIXTURES:
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            if not server.alive():
                server.start()


# -- Synapse ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def synapse() -> Iterator[SynapseServer]:
    """A homeserver with rate limits lifted (``server_name: localhost``)."""

    def make() -> SynapseServer:
        SynapseServer.check_available()
        return SynapseServer()

    yield from _serve(make)


@pytest.fixture(scope="session")
def synapse_rate_limited() -> Iterator[SynapseServer]:
    """A homeserver with Synapse's default rate limits (``limited.localhost``).

    Limits are per user and, for logins, per client address (always
    127.0.0.1 here): use fresh users and avoid password logins in bulk.
    """

    def make() -> SynapseServer:
        SynapseServer.check_available()
        return SynapseServer(rate_limited=True, server_name="limited.localhost")

    yield from _serve(make)


MatrixClientFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def matrix_client(tmp_path: Path) -> AsyncIterator[MatrixClientFactory]:
    """Factory: ``client = await matrix_client(user)`` -> logged-in ``nio.AsyncClient``.

    The client talks to the server the user was registered on, has its own
    store directory (E2EE works), and is configured with
    ``max_limit_exceeded=0, max_timeouts=0``: nio's defaults retry 429s and
    timeouts forever without telling anyone, which would hide exactly the
    behaviour the gateway must handle. Extra keyword arguments go to
    ``AsyncClientConfig``. All clients are closed after the test.

    With E2EE support installed, nio's ``room_send`` raises ``KeyError`` for
    a room the client has not synced yet: sync after creating/joining.
    """
    from nio import AsyncClient, AsyncClientConfig

    clients: list[AsyncClient] = []

    async def make(
        user: MatrixUser, server: SynapseServer | None = None, **config: Any
    ) -> AsyncClient:
        server = server or SynapseServer.for_user(user.user_id)
        store = tmp_path / f"nio-{len(clients)}"
        store.mkdir()
        settings: dict[str, Any] = {"max_limit_exceeded": 0, "max_timeouts": 0}
        settings.update(config)
        client = AsyncClient(
            server.url,
            user.user_id,
            device_id=user.device_id,
            store_path=str(store),
            config=AsyncClientConfig(**settings),
        )
        clients.append(client)
        client.restore_login(user.user_id, user.device_id, user.access_token)
        return client

    yield make
    for client in clients:
        await client.close()


# -- Mail ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """Dovecot IMAP+LMTP with one ready user, camp@example.test / secret.

    Shared by the session: for a mailbox no other test touches, use
    ``mailbox`` (or ``dovecot.new_user()``).
    """
    yield from _serve(lambda: DovecotServer({"camp@example.test": "secret"}))


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[DovecotServer]:
    """Dovecot with ``ssl = required`` and a certificate from a throwaway CA
    (``dovecot_tls.ca_path``): STARTTLS on ``imap_port``, implicit TLS on ``imaps_port``.

    It listens on 127.0.0.2, so it refuses to log in without TLS like a remote server;
    on 127.0.0.1 Dovecot would count loopback as secure (see ``DovecotServer``).
    """
    yield from _serve(lambda: DovecotServer(ssl="required", host="127.0.0.2"))


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> MailUser:
    """A fresh, empty Dovecot user: ``(address, password)``."""
    return dovecot.new_user()


@pytest.fixture(scope="session")
def postfix(dovecot: DovecotServer) -> Iterator[PostfixServer]:
    """Postfix on loopback relaying example.test to ``dovecot`` over LMTP."""

    def make() -> PostfixServer:
        PostfixServer.check_available()
        return PostfixServer(dovecot.lmtp_port)

    yield from _serve(make)


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """An aiosmtpd sink in this test's event loop, on ``smtp_sink.port``.

    ``smtp_sink.fail_next(2, 451)`` / ``fail_next(1, 550)`` script failures;
    ``smtp_sink.credentials = {"user": "pw"}`` demands AUTH on new connections.
    """
    async with SmtpSink() as sink:
        yield sink

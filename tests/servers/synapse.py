"""A real Synapse homeserver on loopback, started from the test interpreter.

Synapse is started with ``sys.executable -m synapse.app.homeserver`` rather
than a ``synapse_homeserver`` found on PATH, so the server always comes from
the same virtualenv (and version) as the tests that talk to it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

from .ports import free_port
from .process import (
    ChildProcess,
    ServerBase,
    ServerStartError,
    ServerUnavailable,
    scratch_dir,
    tail,
)

__all__ = ["MatrixUser", "SynapseServer"]

# Every rc_* setting Synapse 1.16x knows, lifted to "practically unlimited".
# Tests that send bursts must not trip over limits they are not about; the
# tests that are about limits use ``rate_limited=True`` and get the defaults.
_NO_LIMITS = """\
rc_message: &nolimit {per_second: 10000, burst_count: 10000}
rc_registration: *nolimit
rc_login: {address: *nolimit, account: *nolimit, failed_attempts: *nolimit}
rc_joins: {local: *nolimit, remote: *nolimit}
rc_joins_per_room: *nolimit
rc_invites: {per_room: *nolimit, per_user: *nolimit, per_issuer: *nolimit}
rc_room_creation: *nolimit
rc_3pid_validation: *nolimit
rc_third_party_invite: *nolimit
rc_presence: {per_user: *nolimit}
rc_media_create: *nolimit
rc_delayed_event_mgmt: *nolimit
rc_reports: *nolimit
rc_user_directory: *nolimit
rc_profile: *nolimit
rc_admin_redaction: *nolimit
"""


class MatrixUser(NamedTuple):
    """What registration returns; unpacks as ``user_id, token, device_id``."""

    user_id: str
    access_token: str
    device_id: str


class SynapseServer(ServerBase):
    """One homeserver with an SQLite database in a tmpfs scratch directory.

    ``rate_limited=True`` keeps Synapse's default ``rc_*`` limits (a burst of
    about 10 messages, 5 logins per address) so tests can provoke
    ``M_LIMIT_EXCEEDED`` with its ``retry_after_ms``.
    """

    shared_secret = "test_shared_secret"
    _registry: dict[str, SynapseServer] = {}

    def __init__(
        self,
        *,
        rate_limited: bool = False,
        server_name: str = "localhost",
        port: int | None = None,
        data_dir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.rate_limited = rate_limited
        self.server_name = server_name
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or scratch_dir("synapse-")
        self.scratch = self.data_dir
        self.python = python
        self.config_path = self.data_dir / "homeserver.yaml"
        self.log_path = self.data_dir / "synapse.log"
        self.passwords: dict[str, str] = {}
        self._counter = itertools.count(1)
        self._process: ChildProcess | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def check_available(python: str = sys.executable) -> None:
        """Raise ServerUnavailable when matrix-synapse is not importable."""
        import importlib.util
        import subprocess

        if python == sys.executable:
            # Cheap: no 1.5 s import of Synapse in a subprocess.
            if importlib.util.find_spec("synapse") is None:
                raise ServerUnavailable(
                    f"matrix-synapse is not installed in {python}: pip install -e '.[test]'"
                )
            return
        probe = subprocess.run(
            [python, "-c", "import synapse.app.homeserver"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            raise ServerUnavailable(
                f"matrix-synapse is not installed in {python}: "
                f"pip install -e '.[test]' ({probe.stderr.strip().splitlines()[-1:]})"
            )

    def write_config(self) -> None:
        d = self.data_dir
        config = f"""\
server_name: {self.server_name}
public_baseurl: {self.url}/
listeners:
  - {{port: {self.port}, bind_addresses: ['127.0.0.1'], type: http, tls: false,
      resources: [{{names: [client], compress: false}}]}}
database: {{name: sqlite3, args: {{database: {d}/homeserver.db}}}}
media_store_path: {d}/media_store
signing_key_path: {d}/signing.key
pid_file: {d}/homeserver.pid
registration_shared_secret: {self.shared_secret}
report_stats: false
suppress_key_server_warning: true
trusted_key_servers: []
federation_domain_whitelist: []
presence: {{enabled: false}}
bcrypt_rounds: 4
"""
        if not self.rate_limited:
            config += _NO_LIMITS
        self.config_path.write_text(config)

    def start(self, timeout: float = 90.0) -> SynapseServer:
        """Start and block until ``/_matrix/client/versions`` answers.

        Synapse generates its signing key on first start (hence no
        ``--generate-config``, which would also log into the cwd and open
        federation on 8008).
        """
        if self._process and self._process.alive():
            return self
        if not self.config_path.exists():
            self.write_config()
        self._process = ChildProcess(
            [self.python, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            log_path=self.log_path,
            cwd=self.data_dir,
        )
        began = time.monotonic()
        self._process.start()
        deadline = began + timeout
        while True:
            if not self._process.alive():
                code = self._process.popen.returncode if self._process.popen else "?"
                raise ServerStartError(
                    f"Synapse exited with code {code} during startup; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=1) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self._process.stop(kill=True)
                raise ServerStartError(
                    f"Synapse not ready within {timeout:.0f}s; log {self.log_path}:\n"
                    f"{tail(self.log_path)}"
                )
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server; ``kill=True`` simulates a crash (SIGKILL)."""
        if self._process:
            self._process.stop(kill=kill)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(kill=kill)
        self.start()

    # -- HTTP helpers ----------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Blocking JSON request against the client-server API.

        Raises ``urllib.error.HTTPError`` with the Matrix error body readable.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            result: dict[str, Any] = json.loads(resp.read() or b"{}")
            return result

    def register_user(
        self, localpart: str, password: str | None = None, admin: bool = False
    ) -> MatrixUser:
        """Create a user through the shared-secret admin API (never rate limited).

        The password (generated when not given) is kept in ``passwords`` so
        tests about login can use it.
        """
        password = password or secrets.token_urlsafe(12)
        endpoint = "/_synapse/admin/v1/register"
        nonce = self.request("GET", endpoint)["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    localpart.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        try:
            reply = self.request(
                "POST",
                endpoint,
                {
                    "nonce": nonce,
                    "username": localpart,
                    "password": password,
                    "admin": admin,
                    "mac": mac.hexdigest(),
                },
            )
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"registering {localpart!r} failed: {exc.code} {detail}") from exc
        user = MatrixUser(reply["user_id"], reply["access_token"], reply["device_id"])
        self.passwords[user.user_id] = password
        SynapseServer._registry[user.user_id] = self
        return user

    @classmethod
    def for_user(cls, user_id: str) -> SynapseServer:
        """The server a user was registered on by ``register_user``.

        Give servers running side by side distinct ``server_name``s so their
        user ids differ.
        """
        try:
            return cls._registry[user_id]
        except KeyError:
            raise LookupError(f"{user_id} was not registered through SynapseServer") from None

    def new_user(self, prefix: str = "user", *, admin: bool = False) -> MatrixUser:
        """Register a user with a localpart unique on this server.

        The session-wide homeserver is shared by all tests, so fixed names
        like "alice" would collide between tests.
        """
        localpart = f"{prefix}{next(self._counter)}_{secrets.token_hex(3)}"
        return self.register_user(localpart, admin=admin)

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

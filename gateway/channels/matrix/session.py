"""Logging the bot in, and keeping its device across restarts.

The device matters beyond tidiness: Synapse deduplicates a repeated send by
(device, txn_id), which is what makes a resend after a crash harmless, and with E2EE the
device owns the crypto keys participants have already shared room keys with. So the device
id (and, after a password login, the access token) is kept in `store_path/session.json`, and
a password login after a lost token asks for the same device id again.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    LoginResponse,
    WhoamiResponse,
)

from gateway.config import MatrixSettings

log = logging.getLogger(__name__)

SESSION_FILE = "session.json"


class LoginError(Exception):
    """The configured credentials do not log the bot in."""


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    device_id: str
    access_token: str


def make_client(settings: MatrixSettings) -> AsyncClient:
    """An AsyncClient that reports rate limits and timeouts instead of retrying forever.

    nio's defaults sleep through every 429 and retry timeouts without limit, silently; the
    outbox worker must see those errors to schedule retries (and honour retry_after_ms).
    """
    store = Path(settings.store_path)
    store.mkdir(parents=True, exist_ok=True)
    config = AsyncClientConfig(
        max_limit_exceeded=0,
        max_timeouts=0,
        request_timeout=30,
        encryption_enabled=settings.e2ee,
        store_sync_tokens=False,
    )
    return AsyncClient(
        settings.homeserver,
        settings.user_id,
        device_id=settings.device_id,
        store_path=str(store) if settings.e2ee else "",
        config=config,
    )


async def login(client: AsyncClient, settings: MatrixSettings) -> Session:
    """Log in with the saved session, the configured token, or the password (in that order)."""
    path = Path(settings.store_path) / SESSION_FILE
    saved = _load(path, settings.user_id)
    token = settings.access_token.get() if settings.access_token else None
    if saved is not None and (token is None or token == saved.access_token):
        if await _restore(client, saved):
            return saved
        log.warning(
            "saved Matrix session for %s no longer works; logging in again", settings.user_id
        )
    if token is not None:
        who = await _whoami(client, token)
        device = who.device_id or settings.device_id or (saved.device_id if saved else None)
        if not device:
            raise LoginError(
                "the homeserver did not say which device the access token belongs to;"
                " set matrix.device_id"
            )
        session = Session(settings.user_id, device, token)
        await _restore(client, session)
        _save(path, session)
        return session
    if settings.password is None:
        raise LoginError(f"cannot log in as {settings.user_id}: no working token and no password")
    device = settings.device_id or (saved.device_id if saved else None)
    if device:
        client.device_id = device
    resp = await client.login(settings.password.get(), device_name=settings.device_name)
    if not isinstance(resp, LoginResponse):
        raise LoginError(f"password login as {settings.user_id} failed: {resp}")
    session = Session(resp.user_id, resp.device_id, resp.access_token)
    _save(path, session)
    return session


async def _restore(client: AsyncClient, session: Session) -> bool:
    client.restore_login(session.user_id, session.device_id, session.access_token)
    resp = await client.whoami()
    return isinstance(resp, WhoamiResponse) and resp.user_id == session.user_id


async def _whoami(client: AsyncClient, token: str) -> WhoamiResponse:
    client.access_token = token
    resp = await client.whoami()
    if isinstance(resp, ErrorResponse) or not isinstance(resp, WhoamiResponse):
        raise LoginError(f"the configured access token does not work: {resp}")
    return resp


def _load(path: Path, user_id: str) -> Session | None:
    try:
        data = json.loads(path.read_text())
        session = Session(data["user_id"], data["device_id"], data["access_token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return session if session.user_id == user_id else None


def _save(path: Path, session: Session) -> None:
    """Write the session readable by the service user only (it holds an access token)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(
            {
                "user_id": session.user_id,
                "device_id": session.device_id,
                "access_token": session.access_token,
            },
            fh,
        )
    os.replace(tmp, path)

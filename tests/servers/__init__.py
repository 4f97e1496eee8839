"""Real servers on loopback for tests and benchmarks.

Plain classes with blocking ``start()``/``stop()`` (the SMTP sink is async,
as it lives in the caller's event loop), so the same code serves pytest
fixtures (tests/conftest.py) and scripts under bench/ alike. Nothing here
imports pytest.

    from tests.servers import DovecotServer, PostfixServer, SynapseServer

    with SynapseServer() as hs:
        user_id, token, device_id = hs.register_user("alice")
"""

from .dovecot import DovecotServer, MailUser
from .ports import free_port, wait_for_greeting
from .postfix import PostfixServer
from .process import (
    ServerStartError,
    ServerUnavailable,
    install_sigterm_cleanup,
    kill_all_children,
    sweep_stale_scratch,
)
from .smtp_sink import ReceivedMessage, SmtpSink
from .synapse import MatrixUser, SynapseServer

__all__ = [
    "DovecotServer",
    "MailUser",
    "MatrixUser",
    "PostfixServer",
    "ReceivedMessage",
    "ServerStartError",
    "ServerUnavailable",
    "SmtpSink",
    "SynapseServer",
    "free_port",
    "install_sigterm_cleanup",
    "kill_all_children",
    "sweep_stale_scratch",
    "wait_for_greeting",
]

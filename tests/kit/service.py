"""The gateway service as `gateway run` starts it, configured for the loopback test servers.

End-to-end tests write a real `gateway.toml` (so the config loading and channel wiring are
part of what they prove) from these sections, and run the service beside the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from flows.base import Flow
from gateway.app.channels import build_service
from gateway.app.service import Service
from gateway.config import LoadedConfig, load_config
from tests.servers import DovecotServer, MailUser, MatrixUser, PostfixServer, SynapseServer


def email_toml(
    address: str,
    password: str,
    *,
    smtp_port: int,
    imap_port: int,
    secret: str = "test-token-secret",
) -> str:
    """[email] for a gateway mailbox on the test Dovecot, sending through the test Postfix."""
    return f"""
[email]
address = "{address}"
display_name = "Camp 2027"
token_secret = {{ value = "{secret}" }}

[email.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
timeout = 10

[email.imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "{address}"
password = {{ value = "{password}" }}
idle = true
"""


def matrix_toml(homeserver: str, user_id: str, token: str, store_path: Path | str) -> str:
    """[matrix] for a bot account on the test Synapse."""
    return f"""
[matrix]
homeserver = "{homeserver}"
user_id = "{user_id}"
access_token = {{ value = "{token}" }}
store_path = "{store_path}"
"""


def both_channels_config(
    path: Path,
    template: str,
    *,
    synapse: SynapseServer,
    bot: MatrixUser,
    mailbox: MailUser,
    postfix: PostfixServer,
    dovecot: DovecotServer,
    **values: object,
) -> Path:
    """Write a service file from `template`, its {matrix} and {email} sections pointing at
    the test servers (the bot's account, the gateway's mailbox), other fields from `values`."""
    path.write_text(
        template.format(
            matrix=matrix_toml(synapse.url, bot.user_id, bot.access_token, "matrix"),
            email=email_toml(
                mailbox.address,
                mailbox.password,
                smtp_port=postfix.smtp_port,
                imap_port=dovecot.imap_port,
                secret=f"{path.parent.name}-secret",
            ),
            **values,
        )
    )
    return path


@asynccontextmanager
async def running(config_path: Path) -> AsyncIterator[Service]:
    """Run the service from `config_path` until the block ends."""
    async with serving(load_config(config_path)) as service:
        yield service


@asynccontextmanager
async def serving(
    config: LoadedConfig, *, flows: Mapping[str, Flow] | None = None
) -> AsyncIterator[Service]:
    """Run the service `config` describes until the block ends, wired as `gateway run` wires
    it (`build_service`); `flows` replaces the gateway's flows (e.g. by the test flow)."""
    service = await build_service(config, flows=flows)
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        service.stop.set()
        await task


def camp_toml(channel_section: str, *, badge_id: str = "name") -> str:
    """A service file with one small camp (20 seats, a badge name and a diet question), for
    the end-to-end registration tests; `channel_section` is the channel's TOML (or a
    `{placeholder}` formatted later). More questions can be appended."""
    return f"""
[store]
path = "gateway.sqlite3"

{channel_section}
[gatherings.camp]
name = "Camp 2027"
timezone = "Europe/Lisbon"
starts = 2027-07-01
ends = 2027-07-05
venue = "Quinta do Vale"
capacity = 20

[[gatherings.camp.registration.questions]]
id = "{badge_id}"
type = "text"
prompt = "What name would you like on your badge?"

[[gatherings.camp.registration.questions]]
id = "diet"
type = "single_choice"
prompt = "What do you eat?"
options = ["Everything", "Vegetarian", "Vegan"]
"""

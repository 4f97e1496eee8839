"""Organisers' commands over real mail and real Matrix, through the service as `gateway run`
wires it: one router, answers through the outbox.

Rosa is an organiser (her address and Matrix id are in the config). By mail, `!status`
is answered to her address; `!announce` written as a new mail could be forged, so the
gateway asks her to reply, and her reply runs it. In her Matrix DM with the bot, `!confirm`
sends the announcement, and `!export camp` posts the CSV. Mallory, who is not an organiser,
is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from nio import AsyncClient, JoinedMembersResponse, RoomCreateResponse

from gateway.app.service import build_engine
from gateway.config import load_config
from gateway.model import Channel, Identity
from tests.kit import email as kit
from tests.kit.email_participant import Participant, plain_text
from tests.kit.matrix import room_history, sync_until
from tests.kit.participants import bot_said, mail_saying, register, until_said
from tests.kit.service import both_channels_config
from tests.kit.service import running as running_service
from tests.servers import DovecotServer, MailUser, PostfixServer, SynapseServer

CONFIG = """
[store]
path = "gateway.sqlite3"

[[organisers]]
name = "Rosa"
email = "{rosa_mail}"
matrix = "{rosa_matrix}"

{matrix}
{email}
[gatherings.camp]
name = "Camp 2027"
timezone = "UTC"
starts = 2027-07-01
ends = 2027-07-04
capacity = 20

[[gatherings.camp.registration.questions]]
id = "name"
type = "text"
prompt = "Your name?"
"""


async def test_organiser_commands_by_mail_and_in_matrix(
    synapse: SynapseServer,
    dovecot: DovecotServer,
    postfix: PostfixServer,
    mailbox: MailUser,
    matrix_client: Callable[..., Awaitable[AsyncClient]],
    tmp_path: Path,
) -> None:
    bot = synapse.new_user("orgbot")
    rosa_user = synapse.new_user("rosa")
    rosa_box, mallory_box = dovecot.new_user("rosa"), dovecot.new_user("mallory")
    rosa = Participant("Rosa", rosa_box, dovecot, postfix)
    mallory = Participant("Mallory", mallory_box, dovecot, postfix)
    config_path = both_channels_config(
        tmp_path / "gateway.toml",
        CONFIG,
        synapse=synapse,
        bot=bot,
        mailbox=mailbox,
        postfix=postfix,
        dovecot=dovecot,
        rosa_mail=rosa_box.address,
        rosa_matrix=rosa_user.user_id,
    )
    engine = await build_engine(load_config(config_path))
    await register(engine, Identity.email(mallory_box.address, "Mallory"), Channel.EMAIL, ["M"])
    await engine.store.close()

    client = await matrix_client(rosa_user)
    async with running_service(config_path):
        await rosa.write(mailbox.address, "!status", "Thanks!\n-- \nRosa")
        status = await mail_saying(rosa, "registered")
        assert "camp" in plain_text(status) and "outbox" in plain_text(status)

        await mallory.write(mailbox.address, "hi", "!status")
        await mail_saying(mallory, "only the organisers can use commands")

        await rosa.write(mailbox.address, "news", "!announce camp Bring warm boots")
        challenge = await mail_saying(rosa, "must come as a reply")
        await rosa.reply(challenge, "!announce camp Bring warm boots")
        preview = await mail_saying(rosa, "would go to 1 registered person")
        assert "Bring warm boots" in plain_text(preview)

        # The same organiser, in her DM with the bot: confirm, then export.
        created = await client.room_create(is_direct=True, invite=[bot.user_id])
        assert isinstance(created, RoomCreateResponse), created
        room = created.room_id

        async def bot_joined() -> bool:
            members = await client.joined_members(room)
            return isinstance(members, JoinedMembersResponse) and any(
                m.user_id == bot.user_id for m in members.members
            )

        await kit.until(bot_joined, limit=30)
        await sync_until(client, lambda: room in client.rooms)
        for line in ("!confirm", "!export camp"):
            await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": line})
        await until_said(client, bot, room, lambda s: "camp-registrations.csv" in s)
        news = await mail_saying(mallory, "Bring warm boots")
        assert news["Subject"]
    said = await bot_said(client, bot, room)
    assert any("on its way to 1 registered person" in b for b in said)
    files = [e for e in await room_history(client, room, bot.user_id) if e["content"].get("url")]
    assert [f["content"]["msgtype"] for f in files] == ["m.file"]

"""Debrief end to end, with every server real: prompts after the end, answers back, closed.

The service runs as `gateway run` wires it against Synapse, Postfix and Dovecot. The camp
ended yesterday, so the prompt is due when the service starts. Ana answers in her Matrix
DM from a real client, anonymously; Dev answers the emailed form inline, as Gmail quotes
it, through Postfix → Dovecot → the gateway's IMAP reader, for the organisers only. The
service restarts across the prompt time and prompts nobody twice. At the deadline Ana's
answers leave her run, and the reports say what consent allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nio import AsyncClient

from gateway.app.service import build_engine
from gateway.config import load_config
from gateway.model import Channel, Identity
from gateway.ops.debrief import Audience, collect, to_markdown
from gateway.store.db import now_iso
from tests.kit import email as kit
from tests.kit.email_participant import Participant
from tests.kit.participants import bot_said, dm_with_bot, mail_saying, register, until_said
from tests.kit.service import both_channels_config
from tests.kit.service import running as running_service
from tests.servers import DovecotServer, MailUser, PostfixServer, SynapseServer

CONFIG = """
[store]
path = "gateway.sqlite3"

{matrix}
{email}
[gatherings.camp]
name = "Camp 2027"
timezone = "UTC"
starts = {starts}
ends = {ends}
capacity = 20

[[gatherings.camp.registration.questions]]
id = "name"
type = "text"
prompt = "Your name?"

[gatherings.camp.debrief]
after_end_hours = 0
local_hour = 0
answer_days = 30
reminders = 1
remind_every_days = 1

[[gatherings.camp.debrief.questions]]
id = "learned"
type = "text"
prompt = "What did you learn?"

[[gatherings.camp.debrief.questions]]
id = "rating"
type = "scale"
prompt = "How was it, from 1 to 5?"
"""

ANA_LEARNED = "To ask for help early"
DEV_LEARNED = "Bread needs patience"


async def test_debrief_over_matrix_and_email_with_a_restart_and_consent(
    synapse: SynapseServer,
    dovecot: DovecotServer,
    postfix: PostfixServer,
    mailbox: MailUser,
    matrix_client: Callable[..., Awaitable[AsyncClient]],
    tmp_path: Path,
) -> None:
    bot = synapse.new_user("debriefbot")
    ana_user = synapse.new_user("ana")
    dev_box = dovecot.new_user("dev")
    dev = Participant("Dev", dev_box, dovecot, postfix)
    ana = Identity.matrix(ana_user.user_id, "Ana")
    dev_id = Identity.email(dev_box.address, "Dev")
    yesterday = date.today() - timedelta(days=1)
    config_path = both_channels_config(
        tmp_path / "gateway.toml",
        CONFIG,
        synapse=synapse,
        bot=bot,
        mailbox=mailbox,
        postfix=postfix,
        dovecot=dovecot,
        starts=yesterday - timedelta(days=2),
        ends=yesterday,
    )
    # They registered before the camp; the service was not running when it ended.
    engine = await build_engine(load_config(config_path))
    await register(engine, ana, Channel.MATRIX, ["Ana"])
    await register(engine, dev_id, Channel.EMAIL, ["Dev"])
    await engine.store.close()

    client = await matrix_client(ana_user)
    async with running_service(config_path):
        room = await dm_with_bot(client)
        said = await until_said(
            client, bot, room, lambda s: any("Who may see your answers?" in b for b in s)
        )
        form = await mail_saying(dev, "1. Who may see your answers?")
        assert form["Subject"] == "Looking back on Camp 2027"

        # Without crews the choices are: 1. only the organisers, 2. everyone, without my name.
        for answer in ("2", ANA_LEARNED, "4"):
            before = len(said)
            await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": answer})
            said = await until_said(client, bot, room, lambda s: len(s) > before)  # noqa: B023
        assert "without your name" in said[-1]
        await dev.reply_inline(form, {"1. Who": "1", "2. What": DEV_LEARNED, "3. How": "5"})
        await mail_saying(dev, "Only the organisers will see your answers.")

    # A restart after the prompt time prompts nobody again; the deadline closes the debrief.
    async with running_service(config_path) as service:
        engine = service.engine

        async def closed() -> bool:
            """The deadline is now: the close timer is moved (again, should the service's
            start have scheduled it back), and the debrief's gathering run is closed."""
            async with engine.store.transaction() as tx:
                await tx.execute(
                    "UPDATE timers SET due_at = ? WHERE name = 'close'",
                    (now_iso(datetime.now(UTC)),),
                )
                row = await tx.one(
                    "SELECT status FROM flow_runs WHERE flow = 'debrief' AND person_id = 0"
                )
            service.timers.wake()
            return bool(row) and row[0] == "closed"

        await kit.until(closed, limit=30)
        camp = engine.gatherings["camp"]
        organisers = to_markdown(await collect(engine.store, camp))
        public = to_markdown(await collect(engine.store, camp, Audience.PUBLIC))
    said = await bot_said(client, bot, room)
    assert sum("Who may see your answers?" in b for b in said) == 1
    assert f"> {DEV_LEARNED} — Dev" in organisers and f"> {ANA_LEARNED}\n" in organisers
    assert ANA_LEARNED in public and DEV_LEARNED not in public and "Ana" not in public

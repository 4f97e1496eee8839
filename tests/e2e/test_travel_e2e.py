"""Travel sharing end to end, every server real: a driver by email, a rider on Matrix.

The service runs as `gateway run` wires it against Synapse, Postfix and Dovecot, its job
runner in a worker process. Dana (email, Brugge) will drive, Rui (Matrix, Beernem, on her
way) needs a ride. Both answer the travel questions where they are — Dana inline in Gmail-like
replies through Postfix → Dovecot → the gateway's IMAP reader, Rui in his DM from a real
client. The organisers plan; each is proposed the other without contact details; both say
yes; the ride's invite reaches Dana's mailbox and is read by ical.js, Rui is invited to the
ride's room. Then Dana cancels: Rui is told, and — Fay now driving from Oostkamp — proposed
Fay's car.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

from nio import AsyncClient

from gateway.app.service import build_engine
from gateway.config import load_config
from gateway.core.jobs import JobRunner
from gateway.model import Channel, Identity
from gateway.ops import travel as travel_ops
from gateway.ops.router import Router
from tests.e2e.test_crews_e2e import read_invite
from tests.kit.email_participant import Participant
from tests.kit.matrix import sync_until
from tests.kit.participants import dm_with_bot, mail_saying, register, until_said
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
timezone = "Europe/Brussels"
starts = {starts}
ends = {ends}
venue = "De Bijloke, Gent"
capacity = 20

[[gatherings.camp.registration.questions]]
id = "name"
type = "text"
prompt = "Your name?"

[[gatherings.camp.registration.questions]]
id = "city"
type = "city"
prompt = "Where do you live?"

[gatherings.camp.travel]
venue_town = "Gent"
countries = ["BE"]
ask_days_before = 21
plan_days_before = 1
way_back = false
"""


async def answer_by_mail(person: Participant, first: str, answers: dict[str, str]) -> None:
    """The first travel form asks how; the second, the rest (typed under each question)."""
    form = await mail_saying(person, "1. How will you travel")
    await person.reply_inline(form, {"1. How": first})
    rest = await mail_saying(person, "4. …and at the latest?")
    await person.reply_inline(rest, answers)


async def test_a_driver_by_email_and_a_rider_on_matrix_ride_together_then_not(
    synapse: SynapseServer,
    dovecot: DovecotServer,
    postfix: PostfixServer,
    mailbox: MailUser,
    matrix_client: Callable[..., Awaitable[AsyncClient]],
    tmp_path: Path,
) -> None:
    bot, rui_user = synapse.new_user("travelbot"), synapse.new_user("rui")
    dana_box, fay_box = dovecot.new_user("dana"), dovecot.new_user("fay")
    dana = Participant("Dana", dana_box, dovecot, postfix)
    fay = Participant("Fay", fay_box, dovecot, postfix)
    rui = Identity.matrix(rui_user.user_id, "Rui")
    starts = date.today() + timedelta(days=3)
    config_path = both_channels_config(
        tmp_path / "gateway.toml",
        CONFIG,
        synapse=synapse,
        bot=bot,
        mailbox=mailbox,
        postfix=postfix,
        dovecot=dovecot,
        starts=starts,
        ends=starts + timedelta(days=2),
    )
    engine = await build_engine(load_config(config_path))
    dana_id = Identity.email(dana_box.address, "Dana")
    await register(engine, dana_id, Channel.EMAIL, ["Dana", "Brugge"])
    await register(engine, rui, Channel.MATRIX, ["Rui", "Beernem"])
    await engine.store.close()

    client = await matrix_client(rui_user)
    async with running_service(config_path) as service:
        # The questions were due weeks ago: they go out as the service starts.
        room = await dm_with_bot(client)
        # The first question comes as a poll (not a text message) after this welcome;
        # a typed "2" answers it as a vote would.
        said = await until_said(client, bot, room, lambda s: any("easier together" in b for b in s))
        for answer in ("2", "9:00", "10:30", "yes", "a guitar"):
            before = len(said)
            await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": answer})
            said = await until_said(client, bot, room, lambda s: len(s) > before)  # noqa: B023
        assert "a driver passing near you" in said[-1]
        await answer_by_mail(
            dana, "1", {"3. On": "9:00", "4. …and": "9:45", "5. How many": "2", "7. When": "yes"}
        )
        await mail_saying(dana, "look for people to take along")

        await Router(service.engine).run("travel camp plan")
        runner = JobRunner(service.engine)  # the terminal's own runner, as `gateway travel plan`
        try:
            await runner.run_pending()
        finally:
            runner.close()
        plan = await travel_ops.load(service.engine, "camp")
        assert "- Rui (Beernem) at" in travel_ops.describe(plan)
        said = await until_said(client, bot, room, lambda s: "Shall we introduce you?" in s[-1])
        assert "Dana, from Brugge, is driving to Camp 2027" in said[-1]
        assert dana_box.address not in said[-1]  # no contact details in a proposal
        proposal = await mail_saying(dana, "Rui, from Beernem, needs a ride")
        assert rui_user.user_id not in proposal.get_body().get_content()  # type: ignore[union-attr]

        await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "yes"})
        await until_said(client, bot, room, lambda s: "as soon as the other side says yes" in s[-1])
        await dana.reply(proposal, "Yes, happy to!")
        intro = await mail_saying(dana, "You both said yes")
        assert rui_user.user_id in intro.get_body().get_content()  # type: ignore[union-attr]
        calendar = read_invite(intro, tmp_path / "ride.ics")
        assert calendar["method"] == "REQUEST"
        [event] = calendar["events"]
        assert event["summary"] == "Ride to Camp 2027"
        assert event["start"]["tzid"] == "Europe/Brussels"
        assert event["start"]["local"].startswith(f"{starts.isoformat()}T09:")
        await sync_until(client, lambda: len(client.invited_rooms) > 0)
        [ride_room] = list(client.invited_rooms)
        await client.join(ride_room)
        ride = await until_said(client, bot, ride_room, lambda s: bool(s))
        assert "You both said yes" in ride[0] and dana_box.address in ride[0]

        # Fay will drive from Oostkamp too; then Dana cancels (she goes on her own).
        fay_id = Identity.email(fay_box.address, "Fay")
        await register(service.engine, fay_id, Channel.EMAIL, ["Fay", "Oostkamp"])
        await fay.write(mailbox.address, "Travel", "travel")
        fay_answers = {"2. Which": "Oostkamp", "3. On": "9:00", "4. …and": "9:45"}
        await answer_by_mail(fay, "1", {**fay_answers, "5. How many": "1", "7. When": "no"})
        await mail_saying(fay, "look for people to take along")
        await dana.reply(proposal, "change 1")
        again = await mail_saying(dana, "Here it is again")
        await dana.reply_inline(again, {"1. How": "4"})
        said = await until_said(client, bot, room, lambda s: "Fay, from Oostkamp" in s[-1])
        assert any("that ride is off" in b for b in said[-3:])

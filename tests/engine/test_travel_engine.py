"""Travel sharing on the real engine, store, outbox, timers and job runner (fake transports).

Dana drives from Brugge (email), Rui needs a ride from Beernem, on her way (Matrix). They are
asked weeks before, matched by the job, proposed to each other without contact details,
introduced with a departure invite once both say yes; when Dana cancels, Rui is told and,
as Fay now drives from nearby, proposed again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from flows.config import (
    GatheringConfig,
    Question,
    QuestionType,
    RegistrationConfig,
    TravelConfig,
)
from flows.registration.flow import Registration
from flows.travel.flow import Travel
from gateway.core.jobs import JobRunner
from gateway.model import GATHERING_SUBJECT, GroupBody, Identity, OutboxItem, OutKind
from tests.kit.engine import Clock, Harness


def camp() -> GatheringConfig:
    return GatheringConfig(
        slug="camp",
        name="Summer Camp",
        starts=date(2027, 7, 14),
        ends=date(2027, 7, 18),
        capacity=10,
        timezone="Europe/Brussels",
        venue="Gent",
        registration=RegistrationConfig(
            questions=[
                Question(id="name", type=QuestionType.TEXT, prompt="Your name?"),
                Question(id="city", type=QuestionType.CITY, prompt="Where do you live?"),
            ]
        ),
        travel=TravelConfig(venue_town="Gent", countries=["BE"]),
    )


DANA = Identity.email("dana@example.org", "Dana")
RUI = Identity.matrix("@rui:example.org", "Rui")
FAY = Identity.email("fay@example.org", "Fay")
FLOWS = {"registration": Registration(), "travel": Travel()}
#: The email form's numbering: mode, origin, leave from, until, seats, detour, back from,
#: until, share contact, notes. The first form asks only the mode (the rest depends on it).
DRIVE_FORM = {3: "9:00", 4: "9:30", 5: "3", 6: "skip", 7: "skip", 8: "skip", 9: "yes", 10: "-"}


async def drive_by_email(gw: Harness, who: Identity, origin: str = "") -> list[OutboxItem]:
    second = await gw.say(who, "", answers={1: "1"})
    assert "5. How many free seats do you have?" in second[-1].body.text
    return await gw.say(who, "", answers={**DRIVE_FORM, **({2: origin} if origin else {})})


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await Harness.open(
        tmp_path, FLOWS, {"camp": camp()}, Clock(datetime(2027, 5, 1, 9, tzinfo=UTC))
    )
    yield harness
    await harness.close()


async def register(gw: Harness, who: Identity, name: str, city: str) -> int:
    await gw.say(who, "hello")
    if who.kind.value == "email":
        await gw.say(who, "", answers={1: name, 2: city})
    else:
        await gw.say(who, name)
        await gw.say(who, city)
    await gw.say(who, "yes")
    return await gw.person_of(who)


async def run_jobs(gw: Harness) -> list[OutboxItem]:
    runner = JobRunner(gw.engine, executor=lambda: ThreadPoolExecutor(max_workers=1))
    try:
        await runner.run_pending()
    finally:
        runner.close()
    return await gw.deliver()


def to(items: list[OutboxItem], who: Identity) -> list[OutboxItem]:
    return [
        i
        for i in items
        if i.address == who.address
        or (isinstance(i.body, GroupBody) and who.address in i.body.group_addresses)
    ]


async def test_asked_matched_proposed_introduced_cancelled_and_proposed_again(
    gw: Harness,
) -> None:
    await register(gw, DANA, "Dana", "Brugge")
    await register(gw, RUI, "Rui", "Beernem")
    assert await gw.engine.schedule() == 2  # ask, plan
    gw.clock.now = datetime(2027, 6, 23, 10, tzinfo=UTC)  # 21 days before
    asked = await gw.fire_timers()
    form = to(asked, DANA)[0]
    assert "1. How will you travel" in form.body.text
    assert "2. Which town" not in form.body.text  # Brugge is known from registration

    done = await drive_by_email(gw, DANA)
    assert "look for people to take along" in done[-1].body.text
    for answer in ("2", "9:00", "10:00", "skip", "skip", "yes", "big backpack"):
        replies = await gw.say(RUI, answer)
    assert "a driver passing near you" in replies[-1].body.text

    gw.clock.now = datetime(2027, 7, 7, 10, tzinfo=UTC)  # a week before: the plan
    await gw.fire_timers()
    proposals = await run_jobs(gw)
    [for_rui] = to(proposals, RUI)
    assert (
        "Dana, from Brugge, is driving to Summer Camp, leaving Wed 14 Jul 09:" in for_rui.body.text
    )
    assert "dana@example.org" not in for_rui.body.text  # no contact details before both agree
    [for_dana] = to(proposals, DANA)
    assert "Rui, from Beernem, needs a ride" in for_dana.body.text

    await gw.say(RUI, "yes")
    intro = [i for i in await gw.say(DANA, "yes") if i.kind == OutKind.GROUP]
    assert intro, "both said yes: the car is introduced"
    assert all(
        "dana@example.org" in i.body.text and "@rui:example.org" in i.body.text for i in intro
    )
    assert all('"big backpack"' in i.body.text for i in intro)
    assert intro[0].body.invite is not None and intro[0].body.invite.method == "REQUEST"
    # The event lasts from leaving Brugge to arriving at the venue in Gent (about an hour).
    ride = intro[0].body.invite.end - intro[0].body.invite.start
    assert timedelta(minutes=30) < ride < timedelta(hours=2)
    assert intro[0].body.invite.start == datetime(
        2027, 7, 14, 9, 0, tzinfo=camp().zone
    ) + timedelta(minutes=intro[0].body.invite.start.minute)

    # Fay will drive from Oostkamp too, and Dana cancels her car: Rui hears and is proposed Fay.
    await register(gw, FAY, "Fay", "Oostkamp")
    gw.clock.now += timedelta(hours=1)
    late = await gw.say(FAY, "travel", in_reply_to=None)  # registered after they went out
    assert "1. How will you travel" in late[-1].body.text
    await drive_by_email(gw, FAY, "Oostkamp")  # not asked before: no town from registration
    await gw.say(DANA, "change 1")
    off = await gw.say(DANA, "4")
    assert any("that ride is off" in i.body.text for i in to(off, RUI))
    again = await run_jobs(gw)
    [new_for_rui] = to(again, RUI)
    assert "Fay, from Oostkamp, is driving" in new_for_rui.body.text
    _, shared = await gw.run(GATHERING_SUBJECT, "travel")
    statuses = {mid: m["status"] for mid, m in shared["matches"].items()}
    dana, rui, fay = [await gw.person_of(p) for p in (DANA, RUI, FAY)]
    assert statuses == {f"to:{dana}:{rui}": "cancelled", f"to:{fay}:{rui}": "proposed"}


async def test_a_town_with_namesakes_is_asked_apart_and_an_unknown_one_again(
    gw: Harness,
) -> None:
    await register(gw, RUI, "Rui", "Xyzzyville")
    await gw.engine.schedule()
    gw.clock.now = datetime(2027, 6, 23, 10, tzinfo=UTC)
    await gw.fire_timers()
    await gw.say(RUI, "2")
    unknown = await gw.say(RUI, "Xyzzyville")
    assert 'We don\'t know a town called "Xyzzyville"' in unknown[-1].body.text
    which = await gw.say(RUI, "Valencia")
    assert "Which Valencia do you mean?" in which[-1].body.text
    assert "Valencia, Spain" in which[-1].body.text and "Valencia, Venezuela" in which[-1].body.text
    options = which[-1].body.text
    spain = next(line for line in options.splitlines() if "Spain" in line).strip()[0]
    after = await gw.say(RUI, spain)
    assert "from what time can you leave" in after[-1].body.text
    _, state = await gw.run(await gw.person_of(RUI), "travel")
    assert state["origin_town"]["label"] == "Valencia, Spain"


async def test_organisers_plan_review_and_approve_with_a_map(tmp_path: Path) -> None:
    from gateway.ops import travel as travel_ops
    from gateway.ops.router import Router

    reviewed = camp().model_copy(
        update={"travel": TravelConfig(venue_town="Gent", countries=["BE"], review=True)}
    )
    clock = Clock(datetime(2027, 5, 1, 9, tzinfo=UTC))
    gw = await Harness.open(tmp_path, FLOWS, {"camp": reviewed}, clock)
    try:
        await register(gw, DANA, "Dana", "Brugge")
        await register(gw, RUI, "Rui", "Beernem")
        await register(gw, FAY, "Fay", "Ieper")
        await gw.engine.schedule()
        gw.clock.now = datetime(2027, 6, 23, 10, tzinfo=UTC)
        await gw.fire_timers()
        await drive_by_email(gw, DANA)
        for answer in ("2", "9:00", "10:00", "skip", "skip", "no", "skip"):
            await gw.say(RUI, answer)
        await gw.say(FAY, "", answers={1: "2"})  # a rider from Ieper: off every driver's way
        await gw.say(FAY, "", answers={3: "9:00", 4: "10:00", 7: "skip", 8: "skip", 9: "no"})

        threads = JobRunner(gw.engine, executor=lambda: ThreadPoolExecutor(max_workers=1))
        # `gateway travel plan camp`: the router asks the flow, the job runs here.
        await Router(gw.engine).run("travel camp plan")
        await threads.run_pending()
        plan = await travel_ops.load(gw.engine, "camp")
        text = travel_ops.describe(plan)
        assert "Waiting for approval: gateway travel approve camp" in text
        assert "Dana from Brugge, leaves Wed 14 Jul 09:" in text
        assert "- Rui (Beernem) at Wed 14 Jul 09:" in text
        assert "unmatched: Fay (Ieper): no driver near" in text
        assert await gw.deliver() == []  # nothing proposed before approval
        page = travel_ops.map_html(plan)
        assert page.count("<circle") == 3 and "<path" in page and "<rect x=" in page

        await Router(gw.engine).run("travel camp approve")
        proposed = await gw.deliver()
        assert {i.address for i in proposed} == {DANA.address, RUI.address}
    finally:
        await gw.close()


async def test_a_car_agreed_on_feeds_the_crews_travel_term(gw: Harness) -> None:
    """Dana and Rui ride together: the crews solver sees them as one travel group."""
    from flows.config import CrewsConfig
    from flows.crews.solver.solve import SolveOptions, solve
    from gateway.ops.crews.inputs import build_input, load_registrants

    dana = await register(gw, DANA, "Dana", "Brugge")
    rui = await register(gw, RUI, "Rui", "Beernem")
    others = [
        await register(gw, Identity.email(f"p{n}@example.org", f"P{n}"), f"P{n}", "Gent")
        for n in range(4)
    ]
    await gw.engine.schedule()
    gw.clock.now = datetime(2027, 6, 23, 10, tzinfo=UTC)
    await gw.fire_timers()
    await drive_by_email(gw, DANA)
    for answer in ("2", "9:00", "10:00", "skip", "skip", "yes", "skip"):
        await gw.say(RUI, answer)
    gw.clock.now = datetime(2027, 7, 7, 10, tzinfo=UTC)
    await gw.fire_timers()
    await run_jobs(gw)
    await gw.say(RUI, "yes")
    await gw.say(DANA, "yes")

    people = await load_registrants(gw.store, "camp")
    groups = {r.person: r.travel_group for r in people}
    assert groups[dana] == groups[rui] == f"car-{dana}"
    assert all(groups[p] == "" for p in others)
    g = camp().model_copy(update={"crews": CrewsConfig(min_size=2, max_size=2)})
    built = build_input(g, people, {})
    assert built.input.travel_attribute == "travel_group"
    result = solve(built.input, SolveOptions(time_budget=1, seed=0, deterministic=True))
    assert result.assignment[str(dana)] == result.assignment[str(rui)]


async def test_train_company_is_proposed_and_those_who_agree_are_introduced(
    gw: Harness,
) -> None:
    cy, di = Identity.matrix("@cy:example.org", "Cy"), Identity.matrix("@di:example.org", "Di")
    eve = Identity.email("eve@example.org", "Eve")
    for who, name, town in ((cy, "Cy", "Brugge"), (di, "Di", "Brugge"), (eve, "Eve", "Oostkamp")):
        await register(gw, who, name, town)
    await gw.engine.schedule()
    gw.clock.now = datetime(2027, 6, 23, 10, tzinfo=UTC)
    await gw.fire_timers()
    for who in (cy, di):
        for answer in ("3", "8:00", "12:00", "yes", "skip"):
            await gw.say(who, answer)
    await gw.say(eve, "", answers={1: "3"})
    await gw.say(eve, "", answers={3: "8:00", 4: "12:00", 9: "yes", 10: "-"})

    gw.clock.now = datetime(2027, 7, 7, 10, tzinfo=UTC)
    await gw.fire_timers()
    proposals = await run_jobs(gw)
    [for_cy] = to(proposals, cy)
    assert "Di (from Brugge), Eve (from Oostkamp) also take the train or bus" in for_cy.body.text
    assert "eve@example.org" not in for_cy.body.text

    await gw.say(cy, "yes")
    await gw.say(eve, "no")
    met = [i for i in await gw.say(di, "yes") if i.kind == OutKind.GROUP]
    assert met and all(
        "@cy:example.org" in i.body.text and "@di:example.org" in i.body.text for i in met
    )
    groups = [i.body for i in met if isinstance(i.body, GroupBody)]
    assert {a for body in groups for a in body.group_addresses} == {cy.address, di.address}
    assert not any("Eve" in i.body.text for i in met)  # she said no

"""The crews flow's pure steps: proposals, approval, announcements, calendar replies, repairs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.base import Outcome, PersonInfo, RunView
from flows.config import GatheringConfig
from flows.crews.announce import call_uid, first_call_day
from flows.crews.flow import Crews
from gateway.channels.email.ical.invite import Attendee, CalendarEvent, build_request
from gateway.core.render import Renderer
from gateway.model import (
    GATHERING_SUBJECT,
    JOB_DONE,
    CalendarAnswer,
    Channel,
    InboundKind,
    InboundMessage,
    OutKind,
    PersonId,
    Reply,
)
from tests.kit.states import as_stored, context
from tests.unit.test_calendar import ical_js

NOW = datetime(2027, 5, 3, 10, 0, tzinfo=UTC)  # a Monday
FLOW = Crews()


def camp(**crews: Any) -> GatheringConfig:
    return GatheringConfig.model_validate(
        {
            "slug": "camp",
            "name": "Camp",
            "timezone": "Europe/Lisbon",
            "starts": "2027-07-01",
            "ends": "2027-07-05",
            "capacity": 40,
            "registration": {
                "questions": [
                    {"id": "bio", "type": "text", "prompt": "About you:", "shareable": True},
                    {"id": "diet", "type": "text", "prompt": "Diet:"},
                    {
                        "id": "zone",
                        "type": "single_choice",
                        "prompt": "Zone:",
                        "shareable": True,
                        "options": ["Europe/Lisbon", "America/New_York"],
                    },
                    {"id": "share", "type": "yes_no", "prompt": "Share with your crew?"},
                ]
            },
            "crews": {
                "consent_question": "share",
                "call_weekday": "TH",
                "call_time": "19:30",
                "call_minutes": 60,
                "call_count": 6,
                **crews,
            },
        }
    )


def person(
    pid: int, name: str, share: bool, zone: str = "Europe/Lisbon", status: str = "registered"
) -> RunView:
    answers = {
        "bio": f"{name} bakes bread",
        "diet": f"{name}-secret-diet",
        "zone": zone,
        "share": share,
    }
    return RunView(PersonId(pid), status, {"answers": answers}, name)


PEOPLE = {
    p.person: p
    for p in (
        person(1, "Ana", True),
        person(2, "Bo", False),
        person(3, "Cy", True),
        person(4, "Di", True),
        person(5, "Ed", False),
        person(6, "Flo", True),
    )
}


def command(name: str, payload: Mapping[str, Any] | None = None, n: int = 0) -> InboundMessage:
    return InboundMessage(
        Channel.INTERNAL,
        f"cmd-{name}-{n}",
        InboundKind.COMMAND,
        NOW,
        text=name,
        payload=dict(payload or {}),
    )


def run(
    message: InboundMessage,
    state: Mapping[str, Any],
    *,
    gathering: GatheringConfig | None = None,
    people: Mapping[PersonId, RunView] = PEOPLE,
    now: datetime = NOW,
    subject: PersonId = GATHERING_SUBJECT,
) -> Outcome:
    """One step; `state` and the returned states are the JSON the engine stores (the
    gathering run's answer, given as `shared`, is returned as `state`)."""
    ctx = context(
        FLOW,
        message=message,
        now=now,
        gathering=gathering or camp(),
        person=PersonInfo(subject, "Camp" if subject == 0 else "Ana", "en", None),
        state=state,
        shared=state if subject == GATHERING_SUBJECT else {},
        peers={"registration": dict(people)},
    )
    out = as_stored(FLOW.step(ctx))
    if subject == GATHERING_SUBJECT:
        assert out.state is None
        return replace(out, state=out.shared, shared=None)
    return out


def proposal(assignment: Mapping[str, int], kind: str = "initial", **extra: Any) -> InboundMessage:
    return command(
        "proposal",
        {"kind": kind, "assignment": dict(assignment), "languages": ["en", "en"], **extra},
    )


SPLIT = {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1, "6": 1}


def approved_state() -> dict[str, Any]:
    stored = run(proposal(SPLIT), {}).state
    assert stored is not None
    out = run(command("approve"), stored).state
    assert out is not None
    return out


def test_a_proposal_is_stored_for_the_first_round() -> None:
    out = run(proposal(SPLIT, objective=3), {})
    assert out.state is not None and out.send == []
    assert out.state["proposal"]["assignment"] == SPLIT
    assert out.state["proposal"]["round"] == 1 and out.state["proposal"]["objective"] == 3
    assert out.reply == Reply("crews/answer", {"text": "initial proposal stored for round 1"})


@pytest.mark.parametrize("kind", ["repair", "round"])
def test_changes_and_rounds_need_approved_crews(kind: str) -> None:
    out = run(proposal(SPLIT, kind), {})
    assert out.state is not None and "proposal" not in out.state
    assert out.reply is not None and out.reply.refused


def test_approval_introduces_each_crew_with_only_consented_shareable_answers() -> None:
    stored = run(proposal(SPLIT), {}).state
    assert stored is not None
    out = run(command("approve"), stored)
    assert out.state is not None and out.state["approved"]["announced"] is True
    assert [(o.kind, o.group, o.members) for o in out.send] == [
        (OutKind.GROUP, "camp/crew-1", (1, 2, 3)),
        (OutKind.GROUP, "camp/crew-2", (4, 5, 6)),
    ]
    cards = out.send[0].context["crew"]["members"]
    assert cards[0] == {
        "name": "Ana",
        "fields": [
            {"question": "About you:", "answer": "Ana bakes bread"},
            {"question": "Zone:", "answer": "Europe/Lisbon"},
        ],
    }
    assert cards[1] == {"name": "Bo", "fields": []}  # said no: the name only
    text = (
        Renderer()
        .render(
            "crews/intro",
            language="en",
            channel="email",
            context={**out.send[0].context, "gathering": {"name": "Camp"}},
        )
        .text
    )
    assert "Ana bakes bread" in text and "Cy bakes bread" in text
    assert "Bo bakes bread" not in text and "secret-diet" not in text


def test_without_a_consent_question_crewmates_see_names_only() -> None:
    g = camp(consent_question=None)
    stored = run(proposal(SPLIT), {}, gathering=g).state
    assert stored is not None
    out = run(command("approve"), stored, gathering=g)
    assert all(card["fields"] == [] for o in out.send for card in o.context["crew"]["members"])


def test_the_crew_call_is_a_weekly_invite_in_the_gathering_zone() -> None:
    out = run(command("approve"), run(proposal(SPLIT), {}).state or {})
    invite = out.send[0].invite
    assert invite is not None and invite.method == "REQUEST" and invite.sequence == 0
    assert invite.rrule == "FREQ=WEEKLY;COUNT=6" and invite.tzid == "Europe/Lisbon"
    assert invite.start.isoformat() == "2027-05-06T19:30:00+01:00"  # the Thursday after
    assert (invite.end - invite.start).total_seconds() == 3600
    assert invite.uid == call_uid("camp", 1, 0) != out.send[1].invite.uid  # type: ignore[union-attr]
    assert out.send[0].context["call"]["weekday"] == "Thursday"


def test_a_zone_criterion_that_clusters_sets_the_call_zone() -> None:
    g = camp(balance=[{"question": "zone", "mode": "cluster"}])
    people = dict(PEOPLE)
    for pid in (4, 5, 6):
        people[PersonId(pid)] = person(pid, f"P{pid}", True, zone="America/New_York")
    out = run(
        command("approve"),
        run(proposal(SPLIT), {}, gathering=g, people=people).state or {},
        gathering=g,
        people=people,
    )
    zones = [o.invite.tzid for o in out.send if o.invite]
    assert zones == ["Europe/Lisbon", "America/New_York"]


def test_no_call_settings_no_invite() -> None:
    g = camp(call_weekday=None)
    out = run(command("approve"), run(proposal(SPLIT), {}, gathering=g).state or {}, gathering=g)
    assert [o.invite for o in out.send] == [None, None]
    assert all(o.context["call"] is None for o in out.send)


def test_approval_waits_for_announce_at_then_the_timer_announces() -> None:
    g = camp(announce_at="2027-06-01T09:00:00+00:00")
    out = run(command("approve"), run(proposal(SPLIT), {}, gathering=g).state or {}, gathering=g)
    assert out.send == [] and [t.name for t in out.timers] == ["announce"]
    assert out.state is not None and out.state["approved"]["announced"] is False
    tick = InboundMessage(Channel.TIMER, "t1", InboundKind.TICK, NOW, text="announce")
    later = datetime(2027, 6, 1, 9, 0, tzinfo=UTC)
    fired = run(tick, out.state, gathering=g, now=later)
    assert len(fired.send) == 2 and fired.send[0].invite is not None
    assert fired.send[0].invite.start.date() == first_call_day(later, "Europe/Lisbon", "TH")


def test_approval_is_refused_when_registrations_changed() -> None:
    stored = run(proposal(SPLIT), {}).state or {}
    people = {**PEOPLE, PersonId(7): person(7, "Gus", True)}
    people[PersonId(2)] = person(2, "Bo", False, status="cancelled")
    out = run(command("approve"), stored, people=people)
    assert out.send == [] and out.state is not None and "approved" not in out.state
    assert out.reply is not None and out.reply.refused
    assert "no longer registered: 2; not placed: 7" in out.reply.context["text"]


def test_an_accept_reaches_the_roster_through_the_personal_run() -> None:
    state = approved_state()
    uid = call_uid("camp", 1, 0)
    reply = InboundMessage(
        Channel.EMAIL,
        "<r1@mail>",
        InboundKind.CALENDAR_REPLY,
        NOW,
        calendar=CalendarAnswer(uid, "ACCEPTED"),
    )
    personal = run(reply, {}, subject=PersonId(1))
    assert personal.status == "accepted" and len(personal.emit) == 1
    event = personal.emit[0]
    assert (event.flow, event.person, event.name) == ("crews", GATHERING_SUBJECT, "call_reply")
    roster = run(command(event.name, event.payload), state)
    assert roster.state is not None and roster.state["calls"] == {"1": "ACCEPTED"}


def test_a_reply_to_another_crews_call_is_not_recorded() -> None:
    state = approved_state()
    out = run(
        command(
            "call_reply", {"person": "1", "uid": call_uid("camp", 1, 1), "partstat": "DECLINED"}
        ),
        state,
    )
    assert out.state is not None and out.state.get("calls", {}) == {} and out.ignored


def test_a_repair_tells_only_the_changed_crews_and_cancels_the_leavers_call() -> None:
    state = approved_state()
    state["calls"] = {"2": "ACCEPTED", "4": "ACCEPTED"}
    people = dict(PEOPLE)
    people[PersonId(2)] = person(2, "Bo", False, status="cancelled")
    people[PersonId(7)] = person(7, "Gus", True)
    people[PersonId(8)] = person(8, "Hal", True)
    people[PersonId(9)] = person(9, "Ida", True)
    crews3 = {**PEOPLE, **people}
    state["approved"] = {
        **state["approved"],
        "crews": 3,
        "assignment": {**SPLIT, "7": 2, "8": 2, "9": 2},
        "sequences": {"0": 0, "1": 0, "2": 0},
        "zones": dict.fromkeys(("0", "1", "2"), "Europe/Lisbon"),
        "first_call": {"0": "2027-05-06", "1": "2027-05-06", "2": "2027-05-06"},
    }
    # Bo cancelled; Flo moves from crew 2 to crew 1 to keep sizes; crew 3 is untouched.
    repaired = {"1": 0, "3": 0, "6": 0, "4": 1, "5": 1, "7": 2, "8": 2, "9": 2}
    stored = run(proposal(repaired, "repair"), state, people=crews3).state or {}
    out = run(command("approve"), stored, people=crews3)
    groups = [o for o in out.send if o.kind == OutKind.GROUP]
    assert [(o.group, o.members) for o in groups] == [
        ("camp/crew-1", (1, 3, 6)),
        ("camp/crew-2", (4, 5)),
    ]
    assert [o.context["left"] for o in groups] == [["Bo"], ["Flo"]]
    assert [c["name"] for c in groups[0].context["joined"]] == ["Flo"]
    assert [(o.invite.method, o.invite.sequence) for o in groups if o.invite] == [
        ("REQUEST", 1),
        ("REQUEST", 1),
    ]
    cancels = [o for o in out.send if o.kind == OutKind.TEXT]
    assert [
        (o.to, o.context["moved_to"], o.invite.method if o.invite else None) for o in cancels
    ] == [(2, None, "CANCEL"), (6, 1, "CANCEL")]
    assert cancels[1].invite is not None and cancels[1].invite.uid == call_uid("camp", 1, 1)
    assert out.state is not None
    assert out.state["approved"]["sequences"] == {"0": 1, "1": 1, "2": 0}
    assert out.state["calls"] == {"4": "ACCEPTED"}


MIXED = {"1": 0, "4": 0, "2": 0, "3": 1, "5": 1, "6": 1}


def new_round(
    state: dict[str, Any],
    people: Mapping[PersonId, RunView] = PEOPLE,
    gathering: GatheringConfig | None = None,
    round_no: int = 2,
) -> Outcome:
    """Propose and approve the next round: MIXED for everyone still registered."""
    here = [str(p) for p, r in people.items() if r.status == "registered"]
    assignment = {p: MIXED.get(p, 1) for p in here}
    stored = run(proposal(assignment, "round"), state, people=people, gathering=gathering).state
    assert stored is not None and stored["proposal"]["round"] == round_no
    return run(command("approve"), stored, people=people, gathering=gathering)


def test_a_new_round_keeps_history_and_opens_new_rooms() -> None:
    state = approved_state()
    state["calls"] = {"1": "ACCEPTED"}
    out = new_round(state)
    assert out.state is not None
    [past] = out.state["history"]
    assert (past["round"], past["assignment"], past["ended"]) == (1, SPLIT, True)
    assert out.state["calls"] == {}
    intros = [o for o in out.send if not o.closes]
    assert [o.group for o in intros] == ["camp/round-2/crew-1", "camp/round-2/crew-2"]
    assert intros[0].invite is not None and intros[0].invite.uid == call_uid("camp", 2, 0)
    assert all(o.room == "crews/room" for o in out.send)


def test_a_new_round_cancels_the_previous_rounds_calls_and_closes_their_rooms() -> None:
    state = approved_state()
    state["approved"]["sequences"] = {"0": 0, "1": 2}  # crew 2 was repaired twice
    out = new_round(state)
    ended = [o for o in out.send if o.closes]
    # Endings come first, so a calendar drops the old call before the new one arrives.
    assert out.send[:2] == ended
    assert [(o.kind, o.group, o.members, o.template, o.channel) for o in ended] == [
        (OutKind.GROUP, "camp/crew-1", (1, 2, 3), "crews/ended", None),
        (OutKind.GROUP, "camp/crew-2", (4, 5, 6), "crews/ended", None),
    ]
    assert [(o.invite.method, o.invite.uid, o.invite.sequence) for o in ended if o.invite] == [
        ("CANCEL", call_uid("camp", 1, 0), 1),
        ("CANCEL", call_uid("camp", 1, 1), 3),
    ]
    # The cancelled series is the announced one: same first day, zone and recurrence.
    first = run(command("approve"), run(proposal(SPLIT), {}).state or {}).send[1].invite
    assert first is not None and ended[1].invite is not None
    assert (ended[1].invite.start, ended[1].invite.rrule) == (first.start, first.rrule)
    assert [o.context["next_round"] for o in ended] == [2, 2]
    # Approving again (another round) ends round 2, never round 1 a second time.
    third = new_round(out.state or {}, round_no=3)
    assert [o.group for o in third.send if o.closes] == [
        "camp/round-2/crew-1",
        "camp/round-2/crew-2",
    ]


def test_ending_a_round_skips_who_a_repair_already_cancelled() -> None:
    state = approved_state()
    people = {**PEOPLE, PersonId(2): person(2, "Bo", False, status="cancelled")}
    # Bo cancels; the repair cancels Bo's call and moves nobody else.
    repaired = {p: c for p, c in SPLIT.items() if p != "2"}
    stored = run(proposal(repaired, "repair"), state, people=people).state or {}
    after_repair = run(command("approve"), stored, people=people)
    [left] = [o for o in after_repair.send if o.kind == OutKind.TEXT]
    assert left.to == 2 and left.invite is not None and left.invite.method == "CANCEL"
    out = new_round(after_repair.state or {}, people=people)
    ended = [o for o in out.send if o.closes]
    assert [(o.members, o.invite.sequence if o.invite else None) for o in ended] == [
        ((1, 3), 2),
        ((4, 5, 6), 1),
    ]
    assert all(2 not in o.members for o in out.send)


def test_a_round_approved_before_the_last_was_announced_ends_nothing() -> None:
    g = camp(announce_at="2027-06-01T09:00:00+00:00")
    state = (
        run(
            command("approve"), run(proposal(SPLIT), {}, gathering=g).state or {}, gathering=g
        ).state
        or {}
    )
    assert state["approved"]["announced"] is False
    out = new_round(state, gathering=g)
    assert out.send == [] and (out.state or {})["history"][0]["ended"] is True


def test_without_calls_only_the_old_rooms_hear_the_round_ended() -> None:
    g = camp(call_weekday=None)
    state = (
        run(
            command("approve"), run(proposal(SPLIT), {}, gathering=g).state or {}, gathering=g
        ).state
        or {}
    )
    ended = [o for o in new_round(state, gathering=g).send if o.closes]
    assert [(o.invite, o.channel) for o in ended] == [(None, Channel.MATRIX)] * 2


def test_answers_about_the_previous_round_do_not_change_the_new_roster() -> None:
    state = new_round(approved_state()).state or {}
    old_uid, new_uid = call_uid("camp", 1, 0), call_uid("camp", 2, 0)
    late = [{"uid": old_uid}, {"uid": "", "group": "camp/crew-1"}]
    for n, reply in enumerate(late):
        out = run(command("call_reply", {"person": "1", "partstat": "ACCEPTED", **reply}, n), state)
        assert out.ignored and (out.state or {}).get("calls") == {}
    for n, reply in enumerate([{"uid": new_uid}, {"uid": "", "group": "camp/round-2/crew-1"}]):
        out = run(command("call_reply", {"person": "1", "partstat": "DECLINED", **reply}, n), state)
        assert (out.state or {})["calls"] == {"1": "DECLINED"}


def test_a_reaction_carries_the_room_it_was_made_in() -> None:
    reaction = InboundMessage(
        Channel.MATRIX,
        "$r",
        InboundKind.CHOICE,
        NOW,
        choice="yes",
        meta={"room_id": "!old:hs", "group": "camp/crew-1"},
    )
    [event] = run(reaction, {}, subject=PersonId(1)).emit
    assert event.payload == {
        "person": "1",
        "uid": "",
        "group": "camp/crew-1",
        "partstat": "ACCEPTED",
    }


@pytest.mark.parametrize(
    ("round_no", "ended", "name", "topic"),
    [
        (
            1,
            False,
            "Camp — Crew 2",
            "Crew 2 of Camp, round 1 · weekly call Thursday 19:30 Europe/Lisbon",
        ),
        (
            2,
            False,
            "Camp — Crew 2 (round 2)",
            "Crew 2 of Camp, round 2 · weekly call Thursday 19:30 Europe/Lisbon",
        ),
        (
            1,
            True,
            "Camp — Crew 2 (round 1, ended)",
            "Crew 2 of Camp, round 1 · the crews moved on to round 2; this room stays yours",
        ),
    ],
)
def test_room_names_and_topics_are_rendered_for_people(
    round_no: int, ended: bool, name: str, topic: str
) -> None:
    state = approved_state()
    out = (
        new_round(state)
        if round_no == 2 or ended
        else run(command("approve"), run(proposal(SPLIT), {}).state or {})
    )
    [crew2] = [o for o in out.send if o.closes == ended and o.context["crew"]["number"] == 2]
    assert crew2.context["crew"]["round"] == round_no and crew2.room is not None
    room = Renderer().render(
        crew2.room,
        language="en",
        channel="matrix",
        context={**crew2.context, "gathering": {"name": "Camp"}},
    )
    assert (room.subject, room.text) == (name, topic)
    assert "camp/" not in room.subject + room.text  # the internal key stays internal


def test_pins_are_kept_for_registered_people_only() -> None:
    out = run(command("pin", {"person": "3", "crew": 1}), {})
    assert out.state is not None and out.state["pins"] == {"3": 1}
    refused = run(command("pin", {"person": "99", "crew": 1}), out.state)
    assert refused.state is not None and refused.state["pins"] == {"3": 1}
    assert refused.reply is not None and refused.reply.refused
    gone = run(command("unpin", {"person": "3"}), out.state)
    assert gone.state is not None and gone.state["pins"] == {}


def test_personal_runs_ignore_everything_but_calendar_replies() -> None:
    text = InboundMessage(Channel.EMAIL, "<t@mail>", InboundKind.TEXT, NOW, text="hi")
    assert run(text, {}, subject=PersonId(1)).ignored
    assert not FLOW.wants(text, "accepted")


def test_first_call_day_is_strictly_after_the_announcement() -> None:
    thursday = datetime(2027, 5, 6, 8, 0, tzinfo=UTC)
    assert first_call_day(thursday, "Europe/Lisbon", "TH") == date(2027, 5, 13)
    assert first_call_day(thursday, "Europe/Lisbon", "FR") == date(2027, 5, 7)


def test_the_crew_call_invite_reads_right_in_ical_js(tmp_path: Path) -> None:
    """The approval's invite, built into iMIP as the email transport does, read by ical.js."""
    g = camp(balance=[{"question": "zone", "mode": "cluster"}])
    people = {
        **PEOPLE,
        **{PersonId(p): person(p, f"P{p}", True, zone="America/New_York") for p in (4, 5, 6)},
    }
    out = run(
        command("approve"),
        run(proposal(SPLIT), {}, gathering=g, people=people).state or {},
        gathering=g,
        people=people,
    )
    paths = []
    for n, sent in enumerate(out.send):
        invite = sent.invite
        assert invite is not None
        event = CalendarEvent(
            uid=invite.uid,
            sequence=invite.sequence,
            summary=invite.summary,
            start=invite.start,
            end=invite.end,
            tzid=invite.tzid,
            organizer_email="camp@example.test",
            organizer_name="Camp",
            description=invite.description,
            attendees=[Attendee("ana@example.test", rsvp=True)],
            rrule=invite.rrule,
        )
        paths.append(tmp_path / f"crew-{n}.ics")
        paths[-1].write_bytes(build_request(event, dtstamp=NOW))
    lisbon, new_york = (cal["events"][0] for cal in ical_js(paths))
    assert lisbon["start"]["local"] == "2027-05-06T19:30:00"
    assert lisbon["start"]["tzid"] == "Europe/Lisbon"
    assert lisbon["start"]["utc"] == "2027-05-06T18:30:00Z"
    assert new_york["start"]["tzid"] == "America/New_York"
    assert new_york["start"]["utc"] == "2027-05-06T23:30:00Z"
    assert lisbon["rrule"] == "FREQ=WEEKLY;COUNT=6" and len(lisbon["occurrences"]) == 6
    assert lisbon["summary"] == "Camp: crew 1 call"


def solve_request(n: int = 0, pins: Mapping[str, int | None] | None = None) -> InboundMessage:
    """A `solve` COMMAND as `gateway.ops.crews` sends it (the input is the job's business)."""
    return command(
        "solve",
        {
            "kind": "initial",
            "input": {"people": []},
            "options": {"time_budget": 5.0, "seed": 0},
            "extra": {"warnings": []},
            "view": {"names": {"1": "Ana"}},
            "pins": dict(pins or {}),
        },
        n,
    )


def solved(request: int, assignment: Mapping[str, int], n: int = 0) -> InboundMessage:
    view = {"names": {str(p): run.display_name for p, run in PEOPLE.items()}, "answers": {}}
    result = {"kind": "initial", "assignment": dict(assignment), "languages": ["en", "en"]}
    return command(
        JOB_DONE,
        {"job": "solve", "result": {"request": request, "proposal": result, "view": view}},
        n,
    )


def test_a_solve_request_asks_for_the_job_and_answers_at_once() -> None:
    out = run(solve_request(pins={"3": 1}), {"pins": {"2": 0}})
    assert out.state is not None and out.state["pins"] == {"2": 0, "3": 1}
    assert out.state["solving"]["request"] == 1 and out.state["requests"] == 1
    assert [j.name for j in out.jobs] == ["solve"]
    assert out.jobs[0].payload["request"] == 1 and "pins" not in out.jobs[0].payload
    assert out.reply is not None and out.reply.template == "crews/solving"
    assert out.reply.context["seconds"] == 5.0 and out.reply.context["pinned"] == ["Cy"]


def test_the_solved_proposal_is_stored_and_shown_to_who_asked() -> None:
    asked = run(solve_request(), {}).state or {}
    out = run(solved(1, SPLIT), asked)
    assert out.state is not None and out.state["proposal"]["assignment"] == SPLIT
    assert "solving" not in out.state
    assert out.reply is not None and out.reply.template == "crews/proposal"
    text = out.reply.context["text"]
    assert text.startswith("Initial proposal, round 1, for Camp: 6 people in 2 crews")
    assert "Crew 2 (3 people, language en)\n  - Di" in text


def test_a_superseded_solve_does_not_overwrite_the_newer_proposal() -> None:
    first = run(solve_request(0), {}).state or {}
    second = run(solve_request(1), first).state or {}
    newer = {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0, "6": 0}
    stored = run(solved(2, newer), second).state or {}
    late = run(solved(1, SPLIT, 1), stored)
    assert late.ignored and late.state is None and late.reply is None
    assert stored["proposal"]["assignment"] == newer
    # Arriving before the newer one, the older result is dropped all the same.
    early = run(solved(1, SPLIT, 1), second)
    assert early.ignored and early.state is None


def test_no_crews_takes_back_the_pins_the_request_set() -> None:
    asked = run(solve_request(pins={"3": 5, "2": 1}), {"pins": {"2": 0}}).state or {}
    assert asked["pins"] == {"2": 1, "3": 5}
    failed = command(
        JOB_DONE, {"job": "solve", "result": {"request": 1, "reasons": ["crew 6 does not exist"]}}
    )
    out = run(failed, asked)
    assert out.state is not None and out.state["pins"] == {"2": 0}
    assert "proposal" not in out.state and "solving" not in out.state
    assert out.reply is not None and out.reply.refused
    assert out.reply.context["text"] == (
        "no valid crews:\n  - crew 6 does not exist\n(the pin was not kept)"
    )


def test_a_solve_is_refused_when_its_kind_cannot_be_proposed_now() -> None:
    out = run(solve_request(), approved_state())  # approved and announced
    assert out.jobs == [] and out.reply is not None and out.reply.refused
    assert "already announced" in out.reply.context["text"]

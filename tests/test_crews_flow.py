"""The crews flow's pure steps: proposals, approval, announcements, calendar replies, repairs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.base import Outcome, PersonInfo, RunView, StepContext
from flows.config import GatheringConfig
from flows.crews import Crews
from flows.crews_announce import call_uid, first_call_day
from gateway.calendar import Attendee, CalendarEvent, build_request
from gateway.model import (
    GATHERING_SUBJECT,
    CalendarAnswer,
    Channel,
    InboundKind,
    InboundMessage,
    OutKind,
    PersonId,
)
from gateway.render import Renderer
from tests.test_calendar import ical_js

NOW = datetime(2027, 5, 3, 10, 0, tzinfo=UTC)  # a Monday
FLOW = Crews()


def camp(**crews: Any) -> GatheringConfig:
    return GatheringConfig.model_validate({
        "slug": "camp", "name": "Camp", "timezone": "Europe/Lisbon",
        "starts": "2027-07-01", "ends": "2027-07-05", "capacity": 40,
        "registration": {"questions": [
            {"id": "bio", "type": "text", "prompt": "About you:", "shareable": True},
            {"id": "diet", "type": "text", "prompt": "Diet:"},
            {"id": "zone", "type": "single_choice", "prompt": "Zone:", "shareable": True,
             "options": ["Europe/Lisbon", "America/New_York"]},
            {"id": "share", "type": "yes_no", "prompt": "Share with your crew?"},
        ]},
        "crews": {"consent_question": "share", "call_weekday": "TH", "call_time": "19:30",
                  "call_minutes": 60, "call_count": 6, **crews},
    })


def person(pid: int, name: str, share: bool, zone: str = "Europe/Lisbon",
           status: str = "registered") -> RunView:
    answers = {"bio": f"{name} bakes bread", "diet": f"{name}-secret-diet", "zone": zone,
               "share": share}
    return RunView(PersonId(pid), status, {"answers": answers}, name)


PEOPLE = {p.person: p for p in (
    person(1, "Ana", True), person(2, "Bo", False), person(3, "Cy", True),
    person(4, "Di", True), person(5, "Ed", False), person(6, "Flo", True),
)}


def command(name: str, payload: Mapping[str, Any] | None = None, n: int = 0) -> InboundMessage:
    return InboundMessage(Channel.INTERNAL, f"cmd-{name}-{n}", InboundKind.COMMAND, NOW,
                          text=name, payload=dict(payload or {}))


def run(message: InboundMessage, state: Mapping[str, Any], *,
        gathering: GatheringConfig | None = None,
        people: Mapping[PersonId, RunView] = PEOPLE, now: datetime = NOW,
        subject: PersonId = GATHERING_SUBJECT) -> Outcome:
    ctx = StepContext(
        message=message, now=now, gathering=gathering or camp(),
        person=PersonInfo(subject, "Camp" if subject == 0 else "Ana", "en", None),
        state=dict(state), shared=dict(state), peers={"registration": dict(people)},
    )
    return FLOW.step(ctx)


def proposal(assignment: Mapping[str, int], kind: str = "initial", **extra: Any) -> InboundMessage:
    return command("proposal", {"kind": kind, "assignment": dict(assignment),
                                "languages": ["en", "en"], **extra})


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
    assert out.state["last"] == {"command": "proposal", "ok": True,
                                 "detail": "initial proposal stored for round 1"}


@pytest.mark.parametrize("kind", ["repair", "round"])
def test_changes_and_rounds_need_approved_crews(kind: str) -> None:
    out = run(proposal(SPLIT, kind), {})
    assert out.state is not None and "proposal" not in out.state
    assert out.state["last"]["ok"] is False


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
    assert cards[0] == {"name": "Ana", "fields": [
        {"question": "About you:", "answer": "Ana bakes bread"},
        {"question": "Zone:", "answer": "Europe/Lisbon"},
    ]}
    assert cards[1] == {"name": "Bo", "fields": []}  # said no: the name only
    text = Renderer().render("crews/intro", language="en", channel="email",
                             context={**out.send[0].context, "gathering": {"name": "Camp"}}).text
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
    out = run(command("approve"), run(proposal(SPLIT), {}, gathering=g, people=people).state or {},
              gathering=g, people=people)
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
    assert "no longer registered: 2; not placed: 7" in out.state["last"]["detail"]


def test_an_accept_reaches_the_roster_through_the_personal_run() -> None:
    state = approved_state()
    uid = call_uid("camp", 1, 0)
    reply = InboundMessage(Channel.EMAIL, "<r1@mail>", InboundKind.CALENDAR_REPLY, NOW,
                           calendar=CalendarAnswer(uid, "ACCEPTED"))
    personal = run(reply, {}, subject=PersonId(1))
    assert personal.status == "accepted" and len(personal.emit) == 1
    event = personal.emit[0]
    assert (event.flow, event.person, event.name) == ("crews", GATHERING_SUBJECT, "call_reply")
    roster = run(command(event.name, event.payload), state)
    assert roster.state is not None and roster.state["calls"] == {"1": "ACCEPTED"}


def test_a_reply_to_another_crews_call_is_not_recorded() -> None:
    state = approved_state()
    out = run(command("call_reply", {"person": "1", "uid": call_uid("camp", 1, 1),
                                     "partstat": "DECLINED"}), state)
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
    state["approved"] = {**state["approved"], "crews": 3,
                         "assignment": {**SPLIT, "7": 2, "8": 2, "9": 2},
                         "sequences": {"0": 0, "1": 0, "2": 0},
                         "zones": dict.fromkeys(("0", "1", "2"), "Europe/Lisbon"),
                         "first_call": {"0": "2027-05-06", "1": "2027-05-06", "2": "2027-05-06"}}
    # Bo cancelled; Flo moves from crew 2 to crew 1 to keep sizes; crew 3 is untouched.
    repaired = {"1": 0, "3": 0, "6": 0, "4": 1, "5": 1, "7": 2, "8": 2, "9": 2}
    stored = run(proposal(repaired, "repair"), state, people=crews3).state or {}
    out = run(command("approve"), stored, people=crews3)
    groups = [o for o in out.send if o.kind == OutKind.GROUP]
    assert [(o.group, o.members) for o in groups] == [
        ("camp/crew-1", (1, 3, 6)), ("camp/crew-2", (4, 5))]
    assert [o.context["left"] for o in groups] == [["Bo"], ["Flo"]]
    assert [c["name"] for c in groups[0].context["joined"]] == ["Flo"]
    assert [(o.invite.method, o.invite.sequence) for o in groups if o.invite] == [
        ("REQUEST", 1), ("REQUEST", 1)]
    cancels = [o for o in out.send if o.kind == OutKind.TEXT]
    assert [(o.to, o.context["moved_to"], o.invite.method if o.invite else None)
            for o in cancels] == [(2, None, "CANCEL"), (6, 1, "CANCEL")]
    assert cancels[1].invite is not None and cancels[1].invite.uid == call_uid("camp", 1, 1)
    assert out.state is not None
    assert out.state["approved"]["sequences"] == {"0": 1, "1": 1, "2": 0}
    assert out.state["calls"] == {"4": "ACCEPTED"}


def test_a_new_round_keeps_history_and_opens_new_rooms() -> None:
    state = approved_state()
    state["calls"] = {"1": "ACCEPTED"}
    mixed = {"1": 0, "4": 0, "2": 0, "3": 1, "5": 1, "6": 1}
    stored = run(proposal(mixed, "round"), state).state or {}
    assert stored["proposal"]["round"] == 2
    out = run(command("approve"), stored)
    assert out.state is not None
    assert out.state["history"] == [{"round": 1, "assignment": SPLIT}]
    assert out.state["calls"] == {}
    assert [o.group for o in out.send] == ["camp/round-2/crew-1", "camp/round-2/crew-2"]
    assert out.send[0].invite is not None and out.send[0].invite.uid == call_uid("camp", 2, 0)


def test_pins_are_kept_for_registered_people_only() -> None:
    out = run(command("pin", {"person": "3", "crew": 1}), {})
    assert out.state is not None and out.state["pins"] == {"3": 1}
    refused = run(command("pin", {"person": "99", "crew": 1}), out.state)
    assert refused.state is not None and refused.state["pins"] == {"3": 1}
    assert refused.state["last"]["ok"] is False
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
    people = {**PEOPLE, **{PersonId(p): person(p, f"P{p}", True, zone="America/New_York")
                           for p in (4, 5, 6)}}
    out = run(command("approve"), run(proposal(SPLIT), {}, gathering=g, people=people).state or {},
              gathering=g, people=people)
    paths = []
    for n, sent in enumerate(out.send):
        invite = sent.invite
        assert invite is not None
        event = CalendarEvent(
            uid=invite.uid, sequence=invite.sequence, summary=invite.summary,
            start=invite.start, end=invite.end, tzid=invite.tzid,
            organizer_email="camp@example.test", organizer_name="Camp",
            description=invite.description, attendees=[Attendee("ana@example.test", rsvp=True)],
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

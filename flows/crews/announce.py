"""What approved crews are told: the introduction, the changes after a repair, crew calls.

Pure helpers for `flows.crews.flow`. Two privacy rules shape them:

* a member's answers reach crewmates only when the question is marked `shareable` in the
  gathering file AND the member said yes to `crews.consent_question`; otherwise crewmates see
  the display name alone (a missing consent question means nobody consented);
* contact addresses are never put into a message: the Matrix room and the email thread are
  how crewmates reach each other.

Crew calls are one recurring event per crew, in the crew's common time zone: the gathering's
zone, unless a `cluster` balance criterion answers with IANA zone names, in which case the zone
most members of the crew gave.

Each crew's room is named and described by the `crews/room` template (`ROOM_TEMPLATE`). When a
new round is announced the previous round ends: its calls are cancelled (same UID, SEQUENCE
one up, so calendars drop the series) and its rooms are closed with a notice, not emptied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flows.base import RunView
from flows.common.groups import ROOM_TEMPLATE, group_key
from flows.common.names import answers_of, chosen_name
from flows.config import BalanceMode, GatheringConfig, Question
from flows.crews.state import Round
from gateway.model import GATHERING_SUBJECT, Channel, Invite, Outgoing, OutKind, PersonId

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
#: Invite UIDs need a right-hand side; it only has to be stable and ours.
UID_DOMAIN = "crews.gathering-gateway"


#: The name (subject) and topic (text) of a crew's room.
def call_uid(slug: str, round_no: int, crew: int) -> str:
    return f"{slug}-r{round_no}-crew-{crew + 1}-call@{UID_DOMAIN}"


def consented(gathering: GatheringConfig, run: RunView | None) -> bool:
    """Whether the person said yes to sharing their shareable answers with crewmates."""
    question = gathering.crews.consent_question if gathering.crews else None
    if question is None:
        return False
    value = answers_of(run).get(question)
    return value is True or (isinstance(value, str) and value.strip().lower() in ("yes", "y"))


def show_answer(question: Question, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def member_card(
    gathering: GatheringConfig, person: PersonId, run: RunView | None
) -> dict[str, Any]:
    """A member as crewmates see them: the name they chose (the registration's name
    question), else the name their mail client or Matrix profile shows, plus shared answers
    when consented."""
    name = chosen_name(gathering, person, run)
    fields: list[dict[str, str]] = []
    if consented(gathering, run):
        answers = answers_of(run)
        consent_id = gathering.crews.consent_question if gathering.crews else None
        for question in gathering.registration.questions:
            value = answers.get(question.id)
            if question.shareable and question.id != consent_id and value not in (None, "", []):
                fields.append({"question": question.prompt, "answer": show_answer(question, value)})
    return {"name": name, "fields": fields}


def _is_zone(value: object) -> bool:
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def crew_zone(gathering: GatheringConfig, runs: Sequence[RunView | None]) -> str:
    """The time zone of a crew's calls (see the module docstring)."""
    crews = gathering.crews
    if crews is not None:
        for criterion in crews.balance:
            if criterion.mode != BalanceMode.CLUSTER:
                continue
            zones = Counter(
                v for v in (answers_of(r).get(criterion.question) for r in runs) if _is_zone(v)
            )
            if zones:
                return str(min(zones, key=lambda z: (-zones[z], z)))
    return gathering.timezone


def first_call_day(after: datetime, zone: str, weekday: str) -> date:
    """The first `weekday` strictly after the day of `after` in `zone` (a day's notice)."""
    local = after.astimezone(ZoneInfo(zone)).date()
    ahead = (WEEKDAYS.index(weekday) - local.weekday() - 1) % 7 + 1
    return local + timedelta(days=ahead)


def call_invite(
    gathering: GatheringConfig,
    round_no: int,
    crew: int,
    zone: str,
    first: date,
    sequence: int,
    method: str = "REQUEST",
) -> Invite | None:
    """The crew's recurring call, or None when the gathering has no crew calls."""
    crews = gathering.crews
    if crews is None or crews.call_weekday is None or crews.call_time is None:
        return None
    hour, minute = (int(x) for x in crews.call_time.split(":"))
    start = datetime.combine(first, time(hour, minute), tzinfo=ZoneInfo(zone))
    return Invite(
        uid=call_uid(gathering.slug, round_no, crew),
        sequence=sequence,
        method=method,
        summary=f"{gathering.name}: crew {crew + 1} call",
        start=start,
        end=start + timedelta(minutes=crews.call_minutes),
        tzid=zone,
        description=f"The weekly call of crew {crew + 1} of {gathering.name}.",
        rrule=f"FREQ=WEEKLY;COUNT={crews.call_count}",
    )


def call_context(gathering: GatheringConfig, invite: Invite | None) -> dict[str, Any] | None:
    """How templates describe the call (None: no calls)."""
    if invite is None or gathering.crews is None:
        return None
    return {
        "weekday": WEEKDAY_NAMES[invite.start.weekday()],
        "time": invite.start.strftime("%H:%M"),
        "timezone": invite.tzid,
        "minutes": gathering.crews.call_minutes,
        "count": gathering.crews.call_count,
        "first": invite.start.date().isoformat(),
    }


def crew_call(
    gathering: GatheringConfig,
    approved: Round,
    crew: int,
    sequence: int,
    method: str = "REQUEST",
) -> Invite | None:
    """The call of `crew` as announced in `approved` (its zone, its first day) at `sequence`:
    the update sent after a repair, or the CANCEL that removes it from calendars. None when
    the round was announced without calls."""
    day = (approved.first_call or {}).get(crew)
    if day is None:
        return None
    zone = approved.zones.get(crew, gathering.timezone)
    return call_invite(gathering, approved.round, crew, zone, day, sequence, method)


def members_of(assignment: Mapping[str, int], crews: int) -> list[list[str]]:
    """Each crew's people (ids as strings, in id order), by 0-based crew."""
    out: list[list[str]] = [[] for _ in range(crews)]
    for person, crew in sorted(assignment.items(), key=lambda item: int(item[0])):
        out[crew].append(person)
    return out


def group_message(
    g: GatheringConfig,
    approved: Round,
    crew: int,
    members: Sequence[str],
    people: Mapping[str, RunView],
    template: str,
    invite: Invite | None,
    extra: Mapping[str, Any],
    *,
    closes: bool = False,
    channel: Channel | None = None,
) -> Outgoing:
    """A message to the whole crew: its room on Matrix, a copy per member by email."""
    languages = approved.languages
    context = {
        "crew": {
            "number": crew + 1,
            "round": approved.round,
            "language": languages[crew] if crew < len(languages) else "",
            "members": [member_card(g, PersonId(int(p)), people.get(p)) for p in members],
        },
        "call": call_context(g, invite),
        **extra,
    }
    return Outgoing(
        to=GATHERING_SUBJECT,
        template=template,
        context=context,
        kind=OutKind.GROUP,
        group=group_key(g.slug, approved.round, crew),
        members=tuple(PersonId(int(p)) for p in members),
        invite=invite,
        is_reply=False,
        room=ROOM_TEMPLATE,
        closes=closes,
        channel=channel,
    )


def end_round(
    g: GatheringConfig, ended: Round, next_round: int, people: Mapping[str, RunView]
) -> list[Outgoing]:
    """What the crews of `ended` (a round's approved record) hear once `next_round` is out.

    Everyone still in a crew of that round gets the CANCEL of its call; whoever left a crew
    through a repair is no longer in `ended` and had theirs cancelled then. Email members get
    the CANCEL alone (their new introduction says the rest); the room gets a closing notice
    and is left to its members. Without calls there is nothing to cancel, so only rooms hear.
    """
    sends = []
    for crew, members in enumerate(members_of(ended.assignment, ended.crews)):
        if not members:
            continue
        sequence = ended.sequences.get(crew, 0) + 1
        cancel = crew_call(g, ended, crew, sequence, "CANCEL")
        sends.append(
            group_message(
                g,
                ended,
                crew,
                members,
                people,
                "crews/ended",
                cancel,
                {"next_round": next_round},
                closes=True,
                channel=None if cancel else Channel.MATRIX,
            )
        )
    return sends

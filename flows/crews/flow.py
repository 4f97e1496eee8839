"""The crews flow: solve, store a proposal, approve it, announce crews, keep the call roster.

The solver is CPU-heavy (seconds), so it never runs inside a step: a `solve` COMMAND (built
by `gateway.ops.crews.commands` from the registrations) asks for the `solve` job
(`flows.crews.job`), and its result comes back as JOB_DONE, when the proposal is stored and
shown to the organiser who asked. Everything here is cheap bookkeeping on the
gathering-level run (person 0), whose state is `flows.crews.state.CrewsShared`: pins, the
solve request being waited for, the proposal, the approved crews, earlier rounds (`history`,
each `ended` once its calls are cancelled and rooms closed, at the next announcement) and
each member's answer to their crew call.

Every command answers its caller (`Outcome.reply`; `refused` when it was not done). A newer
solve request supersedes an older one still running: the older result is dropped when it
comes back. A pin set with a request that finds no crews is taken back, so that later
proposals do not fail on it too.

Personal runs only receive calendar replies (routed by invite UID) and ✅/❌ reactions in crew
rooms, and pass them on to the gathering run as `call_reply` events; an answer about another
call (an earlier round's, an earlier crew's) is not recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError

from flows.base import JobFunction, Outcome, RunView, StepContext
from flows.common.groups import group_key
from flows.crews.announce import (
    call_invite,
    call_uid,
    crew_call,
    crew_zone,
    end_round,
    first_call_day,
    group_message,
    member_card,
    members_of,
)
from flows.crews.describe import describe_proposal
from flows.crews.job import SOLVE, run_solve
from flows.crews.state import (
    Approved,
    CrewsRun,
    CrewsShared,
    Kind,
    PastRound,
    Proposal,
    Solving,
)
from gateway.model import (
    GATHERING_SUBJECT,
    JOB_DONE,
    Emit,
    InboundKind,
    InboundMessage,
    Outgoing,
    PersonId,
    Reply,
    RunJob,
    SetTimer,
)

ANNOUNCE_TIMER = "announce"
Context = StepContext[CrewsRun, CrewsShared]


class Crews:
    name: ClassVar[str] = "crews"
    reads: ClassVar[tuple[str, ...]] = ("registration",)
    state_model: ClassVar[type[CrewsRun]] = CrewsRun
    shared_model: ClassVar[type[CrewsShared]] = CrewsShared
    jobs: ClassVar[Mapping[str, JobFunction]] = {SOLVE: run_solve}

    def wants(self, message: InboundMessage, status: str) -> bool:
        # Nobody converses with this flow: crew rooms and threads belong to the crew, and
        # calendar replies are routed by their invite UID, not by this question.
        return False

    def step(self, ctx: Context) -> Outcome:
        if not ctx.is_gathering_run:
            return _personal(ctx)
        if ctx.message.kind == InboundKind.TICK and ctx.message.text == ANNOUNCE_TIMER:
            return _announce_due(ctx)
        if ctx.message.kind != InboundKind.COMMAND:
            return Outcome(ignored=True)
        handler = _COMMANDS.get(ctx.message.text)
        if handler is None:
            return _done(ctx.shared, False, f"unknown crews command {ctx.message.text!r}")
        return handler(ctx, ctx.shared)


def _personal(ctx: Context) -> Outcome:
    """A member's answer to the crew calls: a calendar reply (email), or a ✅/❌ reaction
    to the crew introduction in the crew's Matrix room, which carries no invite UID and so
    counts for the member's current crew."""
    message = ctx.message
    if message.kind == InboundKind.CALENDAR_REPLY and message.calendar is not None:
        partstat, uid = message.calendar.partstat.upper(), message.calendar.uid
    elif message.kind == InboundKind.CHOICE and message.choice in REACTION_PARTSTAT:
        partstat, uid = REACTION_PARTSTAT[message.choice], ""
    else:
        return Outcome(ignored=True)
    # The room a reaction was made in (set by the Matrix transport) names its crew and round.
    group = str(message.meta.get("group", ""))
    state = ctx.state
    state.call, state.uid = partstat, uid
    return Outcome(
        state=state,
        status=partstat.lower(),
        emit=[
            Emit(
                "crews",
                GATHERING_SUBJECT,
                "call_reply",
                {"person": str(ctx.person.id), "uid": uid, "group": group, "partstat": partstat},
            )
        ],
    )


REACTION_PARTSTAT = {"yes": "ACCEPTED", "no": "DECLINED"}


def _done(state: CrewsShared, ok: bool, detail: str, **extra: Any) -> Outcome:
    """The command's answer to its caller; extra keyword arguments fill the Outcome."""
    return Outcome(
        shared=state,
        ignored=not ok,
        reply=Reply("crews/answer", {"text": detail}, refused=not ok),
        **extra,
    )


def registered(ctx: Context) -> dict[str, RunView]:
    """Confirmed people of the gathering, by person id as a string (the JSON key form)."""
    runs = ctx.peers.get("registration", {})
    return {str(p): run for p, run in runs.items() if run.status == "registered"}


def _kind_problem(state: CrewsShared, kind: Any) -> str | None:
    """Why a proposal of this kind cannot be made now, if it cannot."""
    approved = state.approved
    if kind not in tuple(Kind):
        return f"unknown proposal kind {kind!r}"
    if kind != Kind.INITIAL and approved is None:
        return "nothing is approved yet: propose first"
    if kind == Kind.INITIAL and approved is not None and approved.announced:
        return "crews are already announced: use update (changes) or round (new crews)"
    return None


def _store(ctx: Context, state: CrewsShared, payload: Mapping[str, Any]) -> str | None:
    """Keep a solver's proposal (see `flows.crews.job.proposal_payload`) as the one to
    approve; the reason it cannot be kept, if so."""
    kind = payload.get("kind")
    problem = _kind_problem(state, kind)
    if problem is not None:
        return problem
    if not payload.get("assignment"):
        return "the proposal assigns nobody"
    approved = state.approved
    if approved is None:
        round_no = 1
    else:
        round_no = approved.round + (1 if kind == Kind.ROUND else 0)
    try:
        state.proposal = Proposal.model_validate(
            {**payload, "round": round_no, "proposed_at": ctx.now}
        )
    except ValidationError as error:
        return f"the proposal does not fit: {error}"
    return None


def _proposal(ctx: Context, state: CrewsShared) -> Outcome:
    """A proposal solved elsewhere (imported, or from tests), stored as it is."""
    problem = _store(ctx, state, ctx.message.payload)
    if problem is not None or state.proposal is None:
        return _done(state, False, problem or "no proposal")
    proposal = state.proposal
    return _done(state, True, f"{proposal.kind} proposal stored for round {proposal.round}")


#: What of a `solve` COMMAND's payload the job needs (see `flows.crews.job`).
JOB_FIELDS = ("kind", "input", "options", "approved", "removed", "extra", "view")


def _solve(ctx: Context, state: CrewsShared) -> Outcome:
    """Ask for a solve; pins the request sets (`pins`: person → crew, or None to unpin) are
    kept now and taken back if it finds no crews."""
    payload = ctx.message.payload
    kind = payload.get("kind")
    problem = _kind_problem(state, kind)
    if problem is not None:
        return _done(state, False, problem)
    people = registered(ctx)
    pins = dict(state.pins)
    restore: dict[str, int | None] = {}
    for person, crew in dict(payload.get("pins", {})).items():
        if crew is None:
            pins.pop(person, None)
            continue
        if person not in people:
            return _done(state, False, f"person {person} is not registered")
        if not isinstance(crew, int) or crew < 0:
            return _done(state, False, "a pin needs a crew number from 1")
        restore[person] = pins.get(person)
        pins[person] = crew
    state.requests += 1
    state.pins = pins
    state.solving = Solving(
        request=state.requests, kind=Kind(str(kind)), since=ctx.now, restore=restore
    )
    job = {k: payload[k] for k in JOB_FIELDS if k in payload}
    context = {
        "kind": kind,
        "round": (state.approved.round if state.approved else 0) + 1,
        "seconds": float(payload.get("options", {}).get("time_budget", 0)),
        "pinned": [_name(p, people, ctx) for p in restore],
    }
    return Outcome(
        shared=state,
        jobs=[RunJob(SOLVE, {**job, "request": state.requests})],
        reply=Reply("crews/solving", context),
    )


def _job_done(ctx: Context, state: CrewsShared) -> Outcome:
    """A solve finished: store its proposal and show it, or say why there is none (and take
    back the pins its request set). The result of a superseded request is dropped."""
    payload = ctx.message.payload
    solving = state.solving
    result: Mapping[str, Any] = payload.get("result") or {}
    # An error carries no request number: it is about the request being solved, if any.
    if solving is None or ("result" in payload and result.get("request") != solving.request):
        return Outcome(ignored=True)
    state.solving = None
    if "error" in payload:
        problem: str | None = f"the solver failed: {payload['error']}"
    elif "reasons" in result:
        problem = "no valid crews:\n" + "\n".join(f"  - {r}" for r in result["reasons"])
    else:
        problem = _store(ctx, state, result["proposal"])
    if problem is not None or state.proposal is None:
        pins = dict(state.pins)
        for person, crew in solving.restore.items():
            if crew is None:
                pins.pop(person, None)
            else:
                pins[person] = crew
        state.pins = pins
        kept = "\n(the pin was not kept)" if solving.restore else ""
        return _done(state, False, (problem or "no proposal") + kept)
    proposal = state.proposal
    approved = state.approved
    before = approved.assignment if approved is not None and approved.announced else None
    text = describe_proposal(ctx.gathering, proposal, result.get("view", {}), state.pins, before)
    return Outcome(
        shared=state, reply=Reply("crews/proposal", {"text": text, "kind": proposal.kind.value})
    )


def _pin(ctx: Context, state: CrewsShared) -> Outcome:
    person, crew = str(ctx.message.payload.get("person", "")), ctx.message.payload.get("crew")
    if person not in registered(ctx):
        return _done(state, False, f"person {person} is not registered")
    if not isinstance(crew, int) or crew < 0:
        return _done(state, False, "a pin needs a crew number from 1")
    state.pins = {**state.pins, person: crew}
    return _done(state, True, f"person {person} pinned to crew {crew + 1}")


def _unpin(ctx: Context, state: CrewsShared) -> Outcome:
    person = str(ctx.message.payload.get("person", ""))
    pins = dict(state.pins)
    if pins.pop(person, None) is None:
        return _done(state, False, f"person {person} is not pinned")
    state.pins = pins
    return _done(state, True, f"person {person} unpinned")


def _approve(ctx: Context, state: CrewsShared) -> Outcome:
    proposal = state.proposal
    if proposal is None:
        return _done(state, False, "no proposal to approve: propose first")
    people = registered(ctx)
    assignment = proposal.assignment
    left = sorted(set(assignment) - set(people), key=int)
    late = sorted(set(people) - set(assignment), key=int)
    if left or late:
        return _done(
            state,
            False,
            "registrations changed since the proposal "
            f"(no longer registered: {_ids(left)}; not placed: {_ids(late)}); "
            "propose again (or update, once crews are approved)",
        )
    previous = state.approved
    if proposal.kind == Kind.ROUND and previous is not None:
        # Kept whole, so the announcement of this round can cancel that round's calls; a
        # round never announced has nothing to end.
        record = previous.model_dump(exclude={"approved_at"})
        state.history = [*state.history, PastRound(**record, ended=not previous.announced)]
        state.calls = {}
    crews = 1 + max(assignment.values())
    approved = Approved(
        round=proposal.round,
        assignment=assignment,
        languages=list(proposal.languages),
        crews=crews,
        approved_at=ctx.now,
        announced=False,
        first_call=None,
        zones={},
        sequences={},
    )
    state.proposal = None
    if proposal.kind == Kind.REPAIR and previous is not None and previous.announced:
        return _approve_repair(ctx, state, previous, approved, people)
    state.approved = approved
    announce_at = ctx.gathering.crews.announce_at if ctx.gathering.crews else None
    if announce_at is not None and announce_at > ctx.now:
        return _done(
            state,
            True,
            f"crews approved; announced at {announce_at.isoformat()}",
            timers=[SetTimer(ANNOUNCE_TIMER, announce_at)],
        )
    sends = _announce(ctx, state, people)
    return _done(
        state,
        True,
        f"crews approved and announced ({crews} crews)",
        send=sends,
        cancel_timers=[ANNOUNCE_TIMER],
    )


def _announce_due(ctx: Context) -> Outcome:
    state = ctx.shared
    if state.approved is None or state.approved.announced:
        return Outcome(ignored=True)
    return Outcome(shared=state, send=_announce(ctx, state, registered(ctx)))


def _announce(ctx: Context, state: CrewsShared, people: Mapping[str, RunView]) -> list[Outgoing]:
    """Introduce every crew to itself and invite it to its call; marks `approved` announced.
    A new round first ends the previous one (see `end_round`), so calendars never hold both."""
    approved = state.approved
    assert approved is not None
    g = ctx.gathering
    members = members_of(approved.assignment, approved.crews)
    zones = {c: crew_zone(g, [people.get(p) for p in m]) for c, m in enumerate(members)}
    weekday = g.crews.call_weekday if g.crews else None
    first = {c: first_call_day(ctx.now, z, weekday) for c, z in zones.items()} if weekday else {}
    sends = _end_previous_round(ctx, state, approved.round, people)
    for c, crew in enumerate(members):
        invite = call_invite(g, approved.round, c, zones[c], first[c], 0) if first else None
        sends.append(group_message(g, approved, c, crew, people, "crews/intro", invite, {}))
    state.approved = approved.model_copy(
        update={
            "announced": True,
            "zones": zones,
            "first_call": first,
            "sequences": dict.fromkeys(range(len(members)), 0),
        }
    )
    return sends


def _end_previous_round(
    ctx: Context, state: CrewsShared, round_no: int, people: Mapping[str, RunView]
) -> list[Outgoing]:
    if not state.history:
        return []
    last = state.history[-1]
    ended = last.as_round()
    if ended is None:
        return []
    state.history = [*state.history[:-1], last.model_copy(update={"ended": True})]
    return end_round(ctx.gathering, ended, round_no, people)


def _approve_repair(
    ctx: Context,
    state: CrewsShared,
    previous: Approved,
    approved: Approved,
    people: Mapping[str, RunView],
) -> Outcome:
    """Tell only the crews whose membership changed; cancel the old call of anyone who left."""
    g = ctx.gathering
    old, new = previous.assignment, approved.assignment
    before = members_of(old, previous.crews)
    after = members_of(new, approved.crews)
    sequences = dict(previous.sequences)
    calls = dict(state.calls)
    sends: list[Outgoing] = []
    changed = [c for c in range(approved.crews) if set(before[c]) != set(after[c])]
    for c in changed:
        sequences[c] = sequences.get(c, 0) + 1
        joined = [p for p in after[c] if p not in before[c]]
        gone = [p for p in before[c] if p not in after[c]]
        for p in joined:
            calls.pop(p, None)
        invite = crew_call(g, previous, c, sequences[c])
        extra = {
            "joined": [member_card(g, PersonId(int(p)), people.get(p)) for p in joined],
            "left": [_name(p, people, ctx) for p in gone],
        }
        sends.append(
            group_message(g, approved, c, after[c], people, "crews/changed", invite, extra)
        )
        cancel = crew_call(g, previous, c, sequences[c], "CANCEL")
        for p in gone:
            calls.pop(p, None)
            sends.append(
                Outgoing(
                    to=PersonId(int(p)),
                    template="crews/left",
                    is_reply=False,
                    context={"crew": {"number": c + 1}, "moved_to": _crew_of(new, p)},
                    invite=cancel,
                )
            )
    state.approved = approved.model_copy(
        update={
            "announced": True,
            "zones": previous.zones,
            "first_call": previous.first_call,
            "sequences": sequences,
        }
    )
    state.calls = calls
    told = ", ".join(str(c + 1) for c in changed) or "none"
    return _done(state, True, f"changes approved; crews told: {told}", send=sends)


def _call_reply(ctx: Context, state: CrewsShared) -> Outcome:
    payload = ctx.message.payload
    person, uid = str(payload.get("person", "")), str(payload.get("uid", ""))
    group = str(payload.get("group", ""))
    approved = state.approved
    crew = approved.assignment.get(person) if approved is not None else None
    slug = ctx.gathering.slug
    if (
        approved is None
        or crew is None
        or (uid and uid != call_uid(slug, approved.round, crew))
        or (group and group != group_key(slug, approved.round, crew))
    ):
        # A late answer to an earlier round's or an earlier crew's call (a calendar reply to a
        # cancelled invite, a reaction in a closed room): not this roster.
        return _done(state, False, f"stale call reply from person {person}")
    state.calls = {**state.calls, person: str(payload.get("partstat", ""))}
    return _done(state, True, f"person {person}: {payload.get('partstat')}")


def _crew_of(assignment: Mapping[str, int], person: str) -> int | None:
    crew = assignment.get(person)
    return None if crew is None else crew + 1


def _name(person: str, people: Mapping[str, RunView], ctx: Context) -> str:
    run = people.get(person) or ctx.peers.get("registration", {}).get(PersonId(int(person)))
    return (run.display_name if run else "") or f"#{person}"


def _ids(people: list[str]) -> str:
    return ", ".join(people) or "none"


_COMMANDS = {
    "solve": _solve,
    JOB_DONE: _job_done,
    "proposal": _proposal,
    "pin": _pin,
    "unpin": _unpin,
    "approve": _approve,
    "call_reply": _call_reply,
}

"""The travel flow: who drives, who needs a ride, matched, proposed, introduced with consent.

Some weeks before the gathering (`ask_days_before`) everyone registered is asked the travel
questions (flows/travel/questions.py) through the shared questionnaire. At
`plan_days_before` — or when the organisers ask, `gateway travel plan` — the gathering-level
run asks for the matching job (flows/travel/matching.py); with `review`, proposals wait for
`gateway travel approve`. Each ride (a driver and a rider, one direction) is then a match:

    proposed ──both yes──> introduced ──calendar Accept──> confirmed
        │                      │
        └──either no──> cancelled <──a driver cancels or changes (re-plan)──┘

A proposal names no contact details or addresses: first name, town, time. Only when both
said yes are they introduced, in a small room (Matrix) or an email thread, with the details
each consented to share and a calendar invite for the departure. A "no", a cancelled
ride or a driver's change triggers a re-plan that keeps every other car as it is; riders
who lose their seat are told and, where another car can take them, proposed again.

A person's run:

    status      "ask"           answers                "yes" / "no"          the gathering
    (none)      → asked, ask    –                      –                     –
    asked       –               questionnaire;         –                     –
                                done → ready (alone)
    ready       –               change → re-plan       –                     proposal → proposed
    proposed    –               change → re-plan       → waiting / ready     ride off → ready
    waiting     –               change → re-plan       –                     introduced;
                                                                             ride off → ready
    introduced  –               change → re-plan       –                     ride off → ready
    alone       –               change → ready         –                     –
    changing    (between "change N" and the new answer: every message is the answer)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from flows.base import JobFunction, Outcome, RunView, Schedule, StepContext
from flows.common.names import chosen_name
from flows.common.questionnaire import Questionnaire
from flows.common.times import zone_time
from flows.common.words import fold, is_help, is_no, is_yes
from flows.config import GatheringConfig, QuestionType
from flows.travel import matching, questions
from flows.travel.places import Found, find_town
from flows.travel.questions import Mode
from flows.travel.state import (
    LIVE,
    Company,
    Direction,
    Match,
    MatchStatus,
    PersonStatus,
    Plan,
    TravelRun,
    TravelShared,
)
from gateway.model import (
    GATHERING_SUBJECT,
    JOB_DONE,
    Channel,
    Emit,
    InboundKind,
    InboundMessage,
    Invite,
    Outgoing,
    OutKind,
    PersonId,
    Reply,
    RunJob,
)

FLOW = "travel"
ASK, PLAN = "ask", "plan"
#: A person's statuses in which a plan may give them a ride.
PLANNABLE = frozenset({"ready", "proposed", "waiting", "introduced"})
Context = StepContext[TravelRun, TravelShared]


class Travel:
    name: ClassVar[str] = "travel"
    state_model: ClassVar[type[TravelRun]] = TravelRun
    shared_model: ClassVar[type[TravelShared]] = TravelShared
    reads: ClassVar[tuple[str, ...]] = ("registration", "travel")
    jobs: ClassVar[Mapping[str, JobFunction]] = {"match": matching.match}
    #: "travel" starts (or shows) a person's travel questions at any time: someone who
    #: registers after the questions went out asks for them so.
    commands: ClassVar[tuple[str, ...]] = ("travel",)
    #: …but a run of travel does not claim messages before the person's more recent runs
    #: (a debrief answer is the debrief's even while a ride proposal waits).
    claims_first: ClassVar[bool] = False

    def wants(self, message: InboundMessage, status: str) -> bool:
        if status in ("asked", "proposed", "changing"):
            return True
        if status and (
            message.answers or message.kind in (InboundKind.EDIT, InboundKind.REDACTION)
        ):
            return True
        return (
            bool(status) and message.kind == InboundKind.TEXT and _command(message.text) is not None
        )

    def schedule(self, gathering: GatheringConfig, state: TravelShared, now: datetime) -> Schedule:
        if gathering.travel is None:
            return {ASK: None, PLAN: None}
        starts = zone_time(gathering.starts, gathering.zone)
        planned: dict[str, datetime | None] = {ASK: None, PLAN: None}
        if not state.asked_at:
            planned[ASK] = starts - timedelta(days=gathering.travel.ask_days_before)
        if not state.planned_at:
            planned[PLAN] = starts - timedelta(days=gathering.travel.plan_days_before)
        return planned

    def step(self, ctx: Context) -> Outcome:
        if ctx.gathering.travel is None:
            return Outcome(ignored=True)
        if ctx.is_gathering_run:
            return _Gathering(ctx).run()
        return _Person(ctx).run()


def _command(text: str) -> str | None:
    words = fold(text).strip(" .!").split()
    if is_help(text):
        return "help"
    if words and words[0] in ("status", "change", "travel"):
        return words[0]
    return None


# -- the gathering-level run --------------------------------------------------------------


def match_id(direction: str, driver: str, rider: str) -> str:
    return f"{direction}:{driver}:{rider}"


class _Gathering:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.g = ctx.gathering
        # The context's shared state is the step's own; this copy is changed, it says what was.
        self.state = ctx.shared.model_copy(deep=True)
        self.outcome = Outcome()
        self.runs: Mapping[PersonId, RunView] = ctx.peers.get(FLOW, {})
        # This flow's own runs, read with its own model (peers are plain JSON).
        self.people = {p: TravelRun.model_validate(run.state) for p, run in self.runs.items()}

    def run(self) -> Outcome:
        message = self.ctx.message
        handler = (
            _GATHERING.get(message.text)
            if message.kind in (InboundKind.TICK, InboundKind.COMMAND)
            else None
        )
        if handler is None:
            return Outcome(ignored=True)
        handler(self)
        if self.state != self.ctx.shared:
            self.outcome.shared = self.state
            self.outcome.status = "planned" if self.state.plan else "open"
        return self.outcome

    # -- asking and planning ---------------------------------------------------------

    def ask(self) -> None:
        """Everyone registered is asked (once); registration's city is their default town."""
        if self.state.asked_at:
            return
        self.state.asked_at = self.ctx.now
        city = next(
            (q.id for q in self.g.registration.questions if q.type == QuestionType.CITY), None
        )
        for person, run in sorted(self.ctx.peers.get("registration", {}).items()):
            if run.status == "registered":
                answers = run.state.get("answers", {})
                origin = answers.get(city) if city else None
                self.outcome.emit.append(Emit(FLOW, person, "ask", {"origin": origin}))

    def plan(self) -> None:
        """Ask for the matching job over everyone's current answers."""
        self.state.planned_at = self.ctx.now
        payload = self.payload(previous=None)
        if payload is None:
            self.state.problem = (
                f"the venue town {questions.config(self.g).venue_town!r} is not known"
            )
            return
        self.state.problem = None
        self.state.job = "plan"
        self.outcome.jobs.append(RunJob("match", payload))

    def replan(self) -> None:
        if not self.state.plan:
            return
        payload = self.payload(previous=self.state.plan)
        if payload is not None:
            self.state.job = "replan"
            self.outcome.jobs.append(RunJob("match", payload))

    def payload(self, previous: Plan | None) -> dict[str, Any] | None:
        venue = find_town(
            questions.config(self.g).venue_town, countries=questions.config(self.g).countries
        )
        if not isinstance(venue, Found):
            return None
        epoch = zone_time(self.g.starts, self.g.zone).replace(hour=0, minute=0)
        sides: dict[str, dict[str, list[Any]]] = {
            d: {"drivers": [], "riders": []} for d in ("to", "back")
        }
        company = []
        forbidden = self.state.forbidden
        for person, run in sorted(self.people.items()):
            town = run.origin_town
            if self.runs[person].status not in PLANNABLE or town is None:
                continue
            answers = run.answers
            mode = answers.get("mode")
            who = {"id": str(person), "lat": town.lat, "lon": town.lon}
            for direction, day, keys, default in (
                (
                    "to",
                    questions.first_day(self.g),
                    ("leave_from", "leave_until"),
                    ("08:00", "18:00"),
                ),
                ("back", questions.last_day(self.g), ("back_from", "back_until"), ("", "")),
            ):
                start, end = questions.window(answers, *keys, default)
                if not start:
                    continue  # no window for the way back: not matched that way
                span = {
                    "earliest": questions.minutes_of_day(day, start, self.g, epoch),
                    "latest": questions.minutes_of_day(day, end, self.g, epoch),
                }
                if mode == Mode.DRIVE:
                    seats = answers.get("seats")
                    sides[direction]["drivers"].append(
                        {
                            **who,
                            **span,
                            "seats": int(seats) if isinstance(seats, int | float) and seats else 1,
                            "max_detour": answers.get("detour"),
                        }
                    )
                elif mode == Mode.RIDE:
                    sides[direction]["riders"].append({**who, **span})
            if mode == Mode.COMPANY:
                company.append({**who, "day": questions.first_day(self.g).isoformat()})
        return {
            "venue": {"lat": venue.town.latitude, "lon": venue.town.longitude},
            "to": {**sides["to"], "forbidden": forbidden.get(Direction.TO, [])},
            "back": {**sides["back"], "forbidden": forbidden.get(Direction.BACK, [])}
            if questions.config(self.g).way_back
            else None,
            "company": company,
            "group_size": questions.config(self.g).company_group_size,
            "previous": previous.model_dump(mode="json") if previous else None,
            "epoch": epoch.isoformat(),
        }

    def job_done(self) -> None:
        payload = self.ctx.message.payload
        kind, self.state.job = self.state.job or "plan", None
        if "error" in payload:
            self.state.problem = f"matching failed: {payload['error']}"
            self.outcome.reply = Reply("travel/planned", {"problem": self.state.problem})
            return
        result = payload["result"]
        epoch = self.state.epoch or self.epoch()
        self.state.plan = Plan.model_validate({**result, "epoch": epoch})
        self.state.epoch = epoch
        review = questions.config(self.g).review and not self.state.approved
        # Whoever asked for the plan (`!travel camp plan`) hears that it is ready.
        sides = [s for s in (result.get("to"), result.get("back")) if s]
        self.outcome.reply = Reply(
            "travel/planned",
            {
                "cars": sum(len(side["cars"]) for side in sides),
                "riders": sum(len(car["riders"]) for side in sides for car in side["cars"]),
                "unmatched": sum(len(side["unmatched"]) for side in sides),
                "review": review,
            },
        )
        if review and kind == "plan":
            return  # the organisers look first: `gateway travel approve`
        self.propose()

    def epoch(self) -> datetime:
        return zone_time(self.g.starts, self.g.zone).replace(hour=0, minute=0)

    def approve(self) -> None:
        self.state.approved = True
        if self.state.plan:
            self.propose()

    # -- proposals, answers, introductions ---------------------------------------------

    def propose(self) -> None:
        """Make the plan's rides matches: new ones are proposed, gone ones are called off."""
        plan = self.state.plan
        assert plan is not None
        matches = self.state.matches
        wanted: dict[str, Match] = {}
        for direction in Direction:
            side = plan.side(direction)
            for car in side.cars if side else []:
                for rider, stop in zip(car.riders, car.stops, strict=True):
                    wanted[match_id(direction, car.driver, rider)] = Match(
                        direction=direction,
                        driver=car.driver,
                        rider=rider,
                        departure=car.departure,
                        arrival=car.arrival if car.arrival is not None else car.departure,
                        stop=stop,
                        status=MatchStatus.PROPOSED,
                    )
        for mid, match in list(matches.items()):
            if match.status in LIVE and mid not in wanted:
                self.call_off(mid, "replanned")
        for mid, ride in wanted.items():
            if mid in matches and matches[mid].status != MatchStatus.CANCELLED:
                kept = matches[mid]
                kept.departure, kept.arrival, kept.stop = ride.departure, ride.arrival, ride.stop
                continue
            matches[mid] = ride
            for role, person, other in (
                ("rider", ride.rider, ride.driver),
                ("driver", ride.driver, ride.rider),
            ):
                self.outcome.emit.append(
                    Emit(
                        FLOW,
                        PersonId(int(person)),
                        "proposal",
                        {"match": mid, "role": role, **self.card(ride, other)},
                    )
                )
        self.propose_company()

    def propose_company(self) -> None:
        """Suggested train or bus groups: each member is asked; those who say yes (two or
        more) are introduced to each other."""
        companies = self.state.companies
        day = questions.first_day(self.g).strftime("%A %d %B")
        for members in self.state.plan.company if self.state.plan else []:
            cid = "company:" + "-".join(sorted(members, key=int))
            if cid in companies:
                continue
            companies[cid] = Company(members=list(members), status=MatchStatus.PROPOSED)
            for person in members:
                others = [self.short(other) for other in members if other != person]
                self.outcome.emit.append(
                    Emit(
                        FLOW,
                        PersonId(int(person)),
                        "proposal",
                        {"match": cid, "role": "company", "others": others, "day": day},
                    )
                )

    def short(self, person: str) -> dict[str, str]:
        """First name and town: all a proposal says about someone."""
        run = self.people.get(PersonId(int(person)))
        registration = self.ctx.peers.get("registration", {}).get(PersonId(int(person)))
        name = chosen_name(self.g, PersonId(int(person)), registration).split()[0]
        town = run.origin_town.name if run and run.origin_town else ""
        return {"name": name, "town": town}

    def company_reply(self, cid: str, person: str, ok: bool) -> None:
        company = self.state.companies.get(cid)
        if company is None or company.status != MatchStatus.PROPOSED:
            return
        company.answers[person] = ok
        if len(company.answers) < len(company.members):
            return
        yes = [p for p in company.members if company.answers.get(p)]
        if len(yes) < 2:
            company.status = MatchStatus.CANCELLED
            for other in yes:
                self.outcome.emit.append(
                    Emit(FLOW, PersonId(int(other)), "ride_off", {"match": cid, "why": "company"})
                )
            return
        company.status = MatchStatus.INTRODUCED
        people = [self.member(p, []) for p in yes]
        self.outcome.send.append(
            Outgoing(
                to=GATHERING_SUBJECT,
                template=f"{FLOW}/company",
                context={"people": people, "day": questions.first_day(self.g).strftime("%A %d %B")},
                kind=OutKind.GROUP,
                group=f"{self.g.slug}/{cid}",
                members=tuple(PersonId(int(p)) for p in yes),
                contacts=tuple(PersonId(int(p["id"])) for p in people if p["shares_contact"]),
                is_reply=False,
                room=f"{FLOW}/company_room",
            )
        )
        for other in yes:
            self.outcome.emit.append(Emit(FLOW, PersonId(int(other)), "introduced", {"match": cid}))

    def card(self, ride: Match, other: str) -> dict[str, Any]:
        """What a proposal says about the other side: first name, town and times only."""
        who = self.short(other)
        return {
            "other": who["name"],
            "town": who["town"],
            "direction": ride.direction.value,
            "departure": self.clock(ride.departure),
            "stop": self.clock(ride.stop),
        }

    def clock(self, minutes: int) -> str:
        moment = self.epoch() + timedelta(minutes=minutes)
        return moment.strftime("%a %d %b %H:%M")

    def reply(self) -> None:
        payload = self.ctx.message.payload
        person, ok = str(payload["person"]), bool(payload["ok"])
        matches = self.state.matches
        for mid in payload.get("matches", []):
            if mid.startswith("company:"):
                self.company_reply(mid, person, ok)
                continue
            match = matches.get(mid)
            if match is None or match.status != MatchStatus.PROPOSED:
                continue
            if match.driver == person:
                match.driver_ok = ok
            else:
                match.rider_ok = ok
            if not ok:
                self.call_off(mid, "declined", by=person)
            elif match.driver_ok and match.rider_ok:
                self.introduce(mid)
        if not ok and any(not m.startswith("company:") for m in payload.get("matches", [])):
            self.replan()

    def call_off(self, mid: str, why: str, by: str | None = None) -> None:
        match = self.state.matches[mid]
        match.status = MatchStatus.CANCELLED
        if why == "declined":
            forbidden = self.state.forbidden.setdefault(match.direction, [])
            pair = [match.driver, match.rider]
            if pair not in forbidden:
                forbidden.append(pair)
        for person in (match.driver, match.rider):
            if person != by:
                self.outcome.emit.append(
                    Emit(FLOW, PersonId(int(person)), "ride_off", {"match": mid, "why": why})
                )

    def introduce(self, mid: str) -> None:
        """Both said yes: the car's group hears who is in it, with the details they shared,
        and a calendar invite for the departure."""
        match = self.state.matches[mid]
        match.status = MatchStatus.INTRODUCED
        direction, driver = match.direction, match.driver
        riders = [
            m
            for m in self.state.matches.values()
            if m.driver == driver
            and m.direction == direction
            and m.status in (MatchStatus.INTRODUCED, MatchStatus.CONFIRMED)
        ]
        members = [driver, *(m.rider for m in riders)]
        sequences = self.state.sequences
        key = f"{direction}:{driver}"
        sequences[key] = sequences.get(key, -1) + 1
        start = self.epoch() + timedelta(minutes=match.departure)
        end = self.epoch() + timedelta(minutes=match.arrival)
        origin = self.people[PersonId(int(driver))].origin_town
        town = origin.label if origin else ""
        invite = Invite(
            uid=f"{self.g.slug}-ride-{direction}-{driver}@gathering-gateway",
            sequence=sequences[key],
            method="REQUEST",
            summary=f"{'Ride to' if direction == 'to' else 'Ride home from'} {self.g.name}",
            start=start,
            end=max(end, start + timedelta(minutes=15)),
            tzid=self.g.timezone,
            location=town if direction == "to" else self.g.venue,
        )
        people = [self.member(p, riders) for p in members]
        self.outcome.send.append(
            Outgoing(
                to=GATHERING_SUBJECT,
                template=f"{FLOW}/intro",
                context={
                    "direction": direction.value,
                    "departure": self.clock(match.departure),
                    "people": people,
                },
                kind=OutKind.GROUP,
                group=f"{self.g.slug}/ride-{direction}-{driver}",
                members=tuple(PersonId(int(p)) for p in members),
                contacts=tuple(PersonId(int(p["id"])) for p in people if p["shares_contact"]),
                invite=invite,
                is_reply=False,
                room=f"{FLOW}/room",
            )
        )
        for person in (driver, match.rider):
            self.outcome.emit.append(
                Emit(FLOW, PersonId(int(person)), "introduced", {"match": mid})
            )

    def member(self, person: str, riders: list[Match]) -> dict[str, Any]:
        run = self.people[PersonId(int(person))]
        registration = self.ctx.peers.get("registration", {}).get(PersonId(int(person)))
        answers = run.answers
        stop = next((m.stop for m in riders if m.rider == person), None)
        return {
            "name": chosen_name(self.g, PersonId(int(person)), registration),
            "town": run.origin_town.label if run.origin_town else "",
            "driver": answers.get("mode") == Mode.DRIVE,
            "stop": self.clock(stop) if stop is not None else None,
            "id": person,
            "shares_contact": bool(answers.get("share_contact")),
            "notes": answers.get("notes") or "",
        }

    def changed(self) -> None:
        """A person changed their answers or left: their rides are called off and re-planned."""
        person = str(self.ctx.message.payload["person"])
        for mid, match in self.state.matches.items():
            if person in (match.driver, match.rider) and match.status in LIVE:
                self.call_off(mid, "changed", by=person)
        self.replan()

    def calendar(self) -> None:
        payload = self.ctx.message.payload
        person, partstat = str(payload["person"]), str(payload["partstat"])
        for mid, match in self.state.matches.items():
            if (
                person in (match.driver, match.rider)
                and match.status == MatchStatus.INTRODUCED
                and partstat == "ACCEPTED"
            ):
                accepted = match.accepted = match.accepted or []
                if person not in accepted:
                    accepted.append(person)
                if {match.driver, match.rider} <= set(accepted):
                    match.status = MatchStatus.CONFIRMED
            elif (
                person in (match.driver, match.rider)
                and match.status in (MatchStatus.INTRODUCED, MatchStatus.CONFIRMED)
                and partstat == "DECLINED"
            ):
                self.call_off(mid, "declined", by=person)
                self.replan()


_GATHERING: dict[str, Callable[[_Gathering], None]] = {
    ASK: _Gathering.ask,
    PLAN: _Gathering.plan,
    "approve": _Gathering.approve,
    JOB_DONE: _Gathering.job_done,
    "reply": _Gathering.reply,
    "changed": _Gathering.changed,
    "calendar": _Gathering.calendar,
}


# -- a person's run ------------------------------------------------------------------------


class _Person:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.g = ctx.gathering
        # The context's state is the step's own; this copy is changed, it says what was.
        self.state = ctx.state.model_copy(deep=True)
        self.outcome = Outcome()
        starts = ctx.gathering.starts
        self.questions = questions.questions(self.g, self.state)
        self.form = Questionnaire(
            questions=self.questions,
            data=self.state,
            message=ctx.message,
            person=ctx.person.id,
            prefix=FLOW,
            in_chat=ctx.person.channel == Channel.MATRIX,
            reference=starts.date() if isinstance(starts, datetime) else starts,
            answering=self.status == "asked",
            on_complete=self.complete,
            send=self.outcome.send,
            check=self.check,
        )

    @property
    def status(self) -> str:
        return self.state.status.value if self.state.status else ""

    def set_status(self, value: PersonStatus) -> None:
        self.state.status = value

    def say(self, name: str, **context: Any) -> None:
        self.form.say(name, **context)

    def check(self, question: Any, value: Any) -> Any:
        problem = questions.check_origin(self.g, self.state, question, value)
        # The list of questions follows the town: "Which Valencia?" comes and goes.
        self.questions[:] = questions.questions(self.g, self.state)
        return problem

    def complete(self) -> None:
        """All answered: ready to be matched (or travelling alone). A change after that calls
        the person's rides off and re-plans them."""
        before = self.state.was.value if self.state.was else self.status
        self.state.was = None
        mode = self.form.answers.get("mode")
        self.set_status(PersonStatus.ALONE if mode == Mode.ALONE else PersonStatus.READY)
        self.say("ready" if before == "asked" else "updated", mode=mode)
        changed = self.ctx.state.answers != self.state.answers
        if before != "asked" and changed:
            self.state.pending = None
            self.outcome.emit.append(
                Emit(FLOW, GATHERING_SUBJECT, "changed", {"person": self.ctx.person.id})
            )

    def run(self) -> Outcome:
        message = self.ctx.message
        if message.kind == InboundKind.COMMAND:
            handler = _PERSON.get(message.text)
            if handler is not None:
                handler(self)
        elif message.kind == InboundKind.CALENDAR_REPLY and message.calendar is not None:
            self.outcome.emit.append(
                Emit(
                    FLOW,
                    GATHERING_SUBJECT,
                    "calendar",
                    {"person": self.ctx.person.id, "partstat": message.calendar.partstat.upper()},
                )
            )
        elif self.status:
            self.converse()
        elif message.kind == InboundKind.TEXT:
            _on_ask(self)  # "travel" from someone not asked yet
        if self.state != self.ctx.state:
            self.outcome.state = self.state
            self.outcome.status = self.status or None
        return self.outcome

    def converse(self) -> None:
        message, form = self.ctx.message, self.form
        if self.status == "proposed" and message.kind in (InboundKind.TEXT, InboundKind.CHOICE):
            text = message.choice if message.kind == InboundKind.CHOICE else message.text
            if text and (is_yes(text) or is_no(text)) and len(text.split()) <= 3:
                self.answer_proposals(is_yes(text))
                return
        if message.kind == InboundKind.CHOICE:
            if not form.vote():
                form.ask_next()
        elif message.kind == InboundKind.EDIT:
            if not form.edit():
                form.answer_text(message.text)
        elif message.kind == InboundKind.REDACTION:
            form.redaction()
        elif message.answers:
            form.take_numbered()
        else:
            command = _command(message.text)
            if command == "help":
                self.say("help", items=form.summary(), status=self.status)
            elif command in ("status", "travel"):
                self.say("status", items=form.summary(), status=self.status)
            elif command == "change":
                # Until the new answer comes, every message of theirs is travel's.
                if self.state.status != PersonStatus.CHANGING:
                    self.state.was = self.state.status
                    self.set_status(PersonStatus.CHANGING)
                form.begin_change(message.text.split(maxsplit=1)[1] if " " in message.text else "")
            elif self.status in ("asked", "changing") or form.is_changing:
                form.answer_text(message.text)
            else:
                self.say("status", items=form.summary(), status=self.status)

    def answer_proposals(self, ok: bool) -> None:
        """Yes or no to every proposal waiting for this person's answer."""
        pending, self.state.pending = self.state.pending or [], None
        self.set_status(PersonStatus.WAITING if ok else PersonStatus.READY)
        self.say("answered", ok=ok)
        self.outcome.emit.append(
            Emit(
                FLOW,
                GATHERING_SUBJECT,
                "reply",
                {"person": self.ctx.person.id, "ok": ok, "matches": pending},
            )
        )


def _on_ask(person: _Person) -> None:
    if person.status:
        return
    person.set_status(PersonStatus.ASKED)
    person.form.answering = True
    origin = person.ctx.message.payload.get("origin")
    if origin:
        problem = questions.check_origin(person.g, person.state, person.questions[1], origin)
        if problem is None:
            person.form.answers["origin"] = origin
            person.questions[:] = questions.questions(person.g, person.state)
    person.form.ask_next(first=True)


def _on_proposal(person: _Person) -> None:
    payload = dict(person.ctx.message.payload)
    person.state.pending = [*(person.state.pending or []), payload["match"]]
    person.set_status(PersonStatus.PROPOSED)
    person.say("proposal", **payload)


def _on_ride_off(person: _Person) -> None:
    mid = person.ctx.message.payload["match"]
    person.state.pending = [m for m in person.state.pending or [] if m != mid]
    if person.status in ("proposed", "introduced", "waiting") and not person.state.pending:
        person.set_status(PersonStatus.READY)
    person.say("ride_off", why=person.ctx.message.payload.get("why"))


def _on_introduced(person: _Person) -> None:
    person.set_status(PersonStatus.INTRODUCED)


def _on_forget(person: _Person) -> None:
    person.state = TravelRun(status=PersonStatus.FORGOTTEN)


_PERSON: dict[str, Callable[[_Person], None]] = {
    "ask": _on_ask,
    "proposal": _on_proposal,
    "ride_off": _on_ride_off,
    "introduced": _on_introduced,
    "forget": _on_forget,
}

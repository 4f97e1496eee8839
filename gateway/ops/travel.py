"""The organisers' view of travel sharing: the plan as text, and as a map (SVG in HTML).

Asking for a plan and approving it are organisers' commands (`travel camp plan|approve`,
gateway/ops/router.py): COMMANDs to the travel flow, like its timer's, so a running service
and the `gateway` command never disagree. This module reads the stored plan and draws it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from flows.base import RunView
from flows.common.names import chosen_name
from flows.config import GatheringConfig
from flows.travel.places import Found, find_town
from flows.travel.state import Direction, Origin, Plan, Side, TravelRun, TravelShared
from gateway.core.engine import Engine
from gateway.model import GATHERING_SUBJECT, PersonId

FLOW = "travel"


class TravelError(Exception):
    """Something the organiser must fix first; the message says what."""


@dataclass
class TravelPlan:
    gathering: GatheringConfig
    #: The travel flow's gathering-level run, read with its model.
    state: TravelShared
    names: Mapping[str, str]
    towns: Mapping[str, Origin]

    @property
    def plan(self) -> Plan:
        assert self.state.plan is not None  # `load` refuses a state without one
        return self.state.plan

    @property
    def epoch(self) -> datetime:
        return self.plan.epoch

    def clock(self, minutes: int) -> str:
        return (self.epoch + timedelta(minutes=minutes)).strftime("%a %d %b %H:%M")


def check(engine: Engine, slug: str) -> GatheringConfig:
    gathering = engine.gatherings.get(slug)
    if gathering is None or gathering.travel is None:
        raise TravelError(f"{slug} has no [travel] section in its gathering file")
    return gathering


async def load(engine: Engine, slug: str) -> TravelPlan:
    gathering = check(engine, slug)
    async with engine.store.read() as tx:
        rows = await tx.all(
            "SELECT r.flow, r.person_id, r.status, r.state, p.display_name FROM flow_runs r"
            " JOIN people p ON p.id = r.person_id"
            " WHERE r.gathering = ? AND r.flow IN ('registration', 'travel')",
            (slug,),
        )
    # Travel's own runs are read with its models: a row that does not fit fails here.
    state = TravelShared()
    names: dict[str, str] = {}
    towns: dict[str, Origin] = {}
    registration: dict[PersonId, RunView] = {}
    travel: dict[PersonId, TravelRun] = {}
    for row in rows:
        person = PersonId(row["person_id"])
        if row["flow"] == FLOW and person == GATHERING_SUBJECT:
            state = TravelShared.from_stored(row["state"])
        elif row["flow"] == FLOW:
            travel[person] = TravelRun.from_stored(row["state"])
        else:
            registration[person] = RunView(
                person, row["status"], json.loads(row["state"]), row["display_name"] or ""
            )
    for person, run in travel.items():
        names[str(person)] = chosen_name(gathering, person, registration.get(person))
        if run.origin_town is not None:
            towns[str(person)] = run.origin_town
    if state.plan is None:
        why = state.problem or "no plan yet: `gateway travel plan` makes one"
        raise TravelError(why)
    return TravelPlan(gathering, state, names, towns)


def describe(plan: TravelPlan) -> str:
    """The plan as organisers read it: cars, unmatched people and why, rides' answers."""
    lines = [f"Travel plan for {plan.gathering.name}"]
    statuses: dict[str, int] = {}
    for match in plan.state.matches.values():
        statuses[match.status] = statuses.get(match.status, 0) + 1
    if statuses:
        lines.append("Rides: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    elif plan.gathering.travel and plan.gathering.travel.review and not plan.state.approved:
        lines.append(f"Waiting for approval: gateway travel approve {plan.gathering.slug}")
    for direction, title in ((Direction.TO, "To the gathering"), (Direction.BACK, "Home")):
        side = plan.plan.side(direction)
        if not side:
            continue
        matched = sum(len(c.riders) for c in side.cars)
        lines.append(
            f"\n{title}: {len(side.cars)} cars, {matched} riders placed, {len(side.unmatched)} not"
        )
        for car in side.cars:
            driver = car.driver
            lines.append(
                f"  {plan.names.get(driver, driver)} from {_town(plan, driver)},"
                f" leaves {plan.clock(car.departure)}, {car.detour} min out of the way"
            )
            for rider, stop in zip(car.riders, car.stops, strict=True):
                who = f"{plan.names.get(rider, rider)} ({_town(plan, rider)})"
                lines.append(f"    - {who} at {plan.clock(stop)}")
        for rider, reason in sorted(side.unmatched.items()):
            lines.append(
                f"  unmatched: {plan.names.get(rider, rider)} ({_town(plan, rider)}): {reason}"
            )
    groups = plan.plan.company
    if groups:
        lines.append("\nTravelling together by train or bus (suggested):")
        for group in groups:
            lines.append(
                "  " + ", ".join(f"{plan.names.get(p, p)} ({_town(plan, p)})" for p in group)
            )
    return "\n".join(lines)


def _town(plan: TravelPlan, person: str) -> str:
    town = plan.towns.get(person)
    return town.name if town else "?"


def map_html(plan: TravelPlan) -> str:
    """A page with the plan drawn as an SVG map: origins, the venue, each car's route."""
    travel = plan.gathering.travel
    assert travel is not None
    venue = find_town(travel.venue_town, countries=travel.countries)
    points = [(t.lat, t.lon) for t in plan.towns.values()]
    if isinstance(venue, Found):
        points.append((venue.town.latitude, venue.town.longitude))
    if not points:
        raise TravelError("nobody has given a town yet")
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    south, north, west, east = min(lats), max(lats), min(lons), max(lons)
    width, height, pad = 800, 600, 40

    def xy(lat: float, lon: float) -> tuple[float, float]:
        x = pad + (lon - west) / max(east - west, 1e-6) * (width - 2 * pad)
        y = pad + (north - lat) / max(north - south, 1e-6) * (height - 2 * pad)
        return round(x, 1), round(y, 1)

    shapes = []
    side = plan.plan.to or Side()
    drivers = {c.driver for c in side.cars}
    riders = {r for c in side.cars for r in c.riders}
    if isinstance(venue, Found):
        vx, vy = xy(venue.town.latitude, venue.town.longitude)
        for car in side.cars:
            stops = [car.driver, *car.riders]
            path = [xy(plan.towns[p].lat, plan.towns[p].lon) for p in stops if p in plan.towns]
            path.append((vx, vy))
            d = " ".join(f"{'M' if i == 0 else 'L'}{x},{y}" for i, (x, y) in enumerate(path))
            shapes.append(f'<path d="{d}" fill="none" stroke="#3b7d5a" stroke-width="2"/>')
        where = html.escape(plan.gathering.venue or travel.venue_town)
        shapes.append(
            f'<rect x="{vx - 7}" y="{vy - 7}" width="14" height="14" fill="#b03a2e">'
            f"<title>{where}</title></rect>"
        )
    for person, town in sorted(plan.towns.items()):
        x, y = xy(town.lat, town.lon)
        colour = "#1f5f99" if person in drivers else "#e08e0b" if person in riders else "#888"
        label = html.escape(f"{plan.names.get(person, person)} ({town.name})")
        shapes.append(
            f'<circle cx="{x}" cy="{y}" r="5" fill="{colour}"><title>{label}</title></circle>'
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" role="img" aria-label="travel plan map">'
        f'<rect width="{width}" height="{height}" fill="#f7f5ef"/>' + "".join(shapes) + "</svg>"
    )
    text = html.escape(describe(plan))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Travel plan · {html.escape(plan.gathering.name)}</title></head><body>"
        f"<h1>Travel plan · {html.escape(plan.gathering.name)}</h1>"
        "<p>Squares: the venue; blue: drivers; orange: riders; grey: not placed.</p>"
        f"<figure>{svg}</figure><pre>{text}</pre></body></html>\n"
    )

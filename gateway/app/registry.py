"""The flows this gateway runs, by name."""

from __future__ import annotations

from flows.base import Flow
from flows.crews.flow import Crews
from flows.debrief.flow import Debrief
from flows.linking import Linking
from flows.organisers import Organisers
from flows.registration.flow import Registration
from flows.travel.flow import Travel


def default_flows() -> dict[str, Flow]:
    flows: list[Flow] = [Registration(), Crews(), Debrief(), Travel(), Organisers(), Linking()]
    return {flow.name: flow for flow in flows}

"""Routing for flows that own command words ("link …"), asked before the person's other runs.

Registration wants nearly every text of a person in the middle of registering, and the
engine asks the most recently active run first, so without this a "link email …" message or
the code typed back would be read as a registration answer. A flow opts in by declaring
`commands: ClassVar[tuple[str, ...]]`; `gateway.core.routing.route` calls `command_target` right
after the in-reply-to lookup, with the person's live runs (gathering, flow, status), most
recent first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flows.base import Flow
from flows.config import GatheringConfig
from gateway.model import InboundKind, InboundMessage, PersonId, Target


def command_target(
    message: InboundMessage,
    person: PersonId,
    gatherings: Mapping[str, GatheringConfig],
    flows: Mapping[str, Flow],
    live: Sequence[tuple[str, str, str]],
) -> Target | None:
    """The run of a command-owning flow this message belongs to, if any.

    First the live runs of such flows (a pending code reaches the linking run even when
    registration was busier since), then a message whose first word is one of their
    commands, in the person's most recent gathering (or the first configured one).
    """
    owners = {name: f for name, f in flows.items() if getattr(f, "commands", ())}
    if not owners:
        return None
    for gathering, flow, status in live:
        # Only flows that say so claim a message before the person's more recent runs (a
        # pending link code); the others are asked in their turn, most recent first.
        claims = getattr(owners.get(flow), "claims_first", True)
        if flow in owners and claims and owners[flow].wants(message, status):
            return Target(gathering, flow, person)
    if message.kind != InboundKind.TEXT or not message.text.split():
        return None
    first = message.text.split(maxsplit=1)[0].lower()
    for name, flow_obj in owners.items():
        if first in getattr(flow_obj, "commands", ()):
            if live:
                return Target(live[0][0], name, person)
            if gatherings:
                return Target(sorted(gatherings)[0], name, person)
    return None

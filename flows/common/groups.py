"""Where a crew talks: the key of its room (Matrix) or thread (email).

Crews make the groups; other flows (debrief) write to the same crew's room, so the key is
shared here rather than imported from the crews flow.
"""

from __future__ import annotations

#: The template that names a crew's room (its subject) and sets its topic.
ROOM_TEMPLATE = "crews/room"


def group_key(slug: str, round_no: int, crew: int) -> str:
    """The room/thread key of a crew (0-based `crew`); later rounds get rooms of their own."""
    if round_no <= 1:
        return f"{slug}/crew-{crew + 1}"
    return f"{slug}/round-{round_no}/crew-{crew + 1}"

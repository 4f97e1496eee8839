"""Registration steps that touch seats, the waiting list and the calendar invite.

Decisions where pretix and common sense had to fill gaps:

* A held offer that is not accepted in time is gone, and so is the person's place on the
  waiting list (pretix does the same with an expired waiting-list voucher): the seat goes to
  the next person, and the person is told they can rejoin (at the end) with "join".
* Expiry is decided by the offer's end time, never by when the timer fires: after downtime a
  "yes" that arrives past the end is an expired offer even if the timer has not fired yet.
* After `closes_at` nobody new can confirm (not even onto the waiting list), but people
  already waiting keep their place and freed seats are still offered to them: they
  committed before the deadline, and the organisers want the seats used.
* A declined calendar invite never frees a seat by itself: a mis-click in a calendar app
  must not cost someone their place, so we ask.
"""

from __future__ import annotations

from typing import Any

from flows.registration.state import Attendance, Left
from flows.registration.text import invite, invite_uid
from flows.registration.turn import Status, Turn

CALENDAR_ATTENDANCE = {"ACCEPTED": Attendance.ACCEPTED, "TENTATIVE": Attendance.TENTATIVE}


def window_closed(turn: Turn) -> bool:
    """Tell the person when registration is not open now; True when it is not."""
    registration = turn.ctx.gathering.registration
    now = turn.ctx.now
    if registration.opens_at is not None and now < turn.local(registration.opens_at):
        turn.say("not_open", opens_at=turn.local(registration.opens_at))
        return True
    if registration.closes_at is not None and now >= turn.local(registration.closes_at):
        turn.say("closed", closed_at=turn.local(registration.closes_at))
        return True
    return False


def confirm(turn: Turn) -> None:
    """Take a seat, or a place on the waiting list, for a person whose answers are complete."""
    if window_closed(turn):
        return
    gathering = turn.ctx.gathering
    result = turn.seats.take(
        turn.person, gathering.capacity, waiting_list=gathering.registration.waiting_list
    )
    if result == "registered":
        register(turn)
    elif result == "waiting":
        turn.status = Status.WAITING
        turn.state.left = None
        turn.say("waiting", place=turn.seats.place(turn.person))
        turn.offer_seats()
    else:
        turn.say("full")


def register(turn: Turn) -> None:
    """The person has a seat: confirm it with a calendar invite (a new SEQUENCE each time)."""
    sequence = (turn.state.sequence if turn.state.sequence is not None else -1) + 1
    turn.state.sequence = sequence
    turn.state.invite_uid = invite_uid(turn.ctx.gathering, turn.person)
    turn.state.offer_expires = None
    turn.state.left = None
    turn.status = Status.REGISTERED
    turn.say("registered", invite=invite(turn.ctx.gathering, turn.person, sequence, "REQUEST"))


def cancel(turn: Turn, reason: Left = Left.CANCELLED) -> None:
    """Leave: free the seat (or the place, or the offer) and offer it to the next person."""
    was = turn.status
    turn.seats.release(turn.person)
    turn.status = Status.CANCELLED
    turn.state.left = reason
    turn.state.offer_expires = None
    turn.outcome.cancel_timers.append("hold")
    cancel_invite = None
    if was == "registered" and turn.state.sequence is not None:
        sequence = turn.state.sequence + 1
        turn.state.sequence = sequence
        cancel_invite = invite(turn.ctx.gathering, turn.person, sequence, "CANCEL")
    turn.say(
        "offer_declined" if reason == Left.OFFER_DECLINED else "cancelled",
        invite=cancel_invite,
        was=was,
    )
    turn.offer_seats()


def leave_quietly(turn: Turn) -> None:
    """The person is being erased (`gateway forget`): their seat, place or offer goes to the
    next person, and nothing is sent to an address about to be blanked."""
    if turn.status in ("", "cancelled"):
        return
    turn.seats.release(turn.person)
    turn.status = Status.CANCELLED
    turn.state.left = Left.ERASED
    turn.outcome.cancel_timers.append("hold")
    turn.offer_seats()


def receive_offer(turn: Turn) -> None:
    """A seat was freed for this person (an `offer_seat` event from another run)."""
    expires = turn.seats.offers.get(turn.person)
    if expires is None:
        turn.note("offer_ignored", reason="no offer held in the shared state")
        return
    turn.status = Status.OFFERED
    turn.state.offer_expires = expires
    turn.timer("hold", expires)
    turn.say("offer", expires_at=turn.local(expires))


def accept_offer(turn: Turn) -> None:
    turn.outcome.cancel_timers.append("hold")
    if turn.seats.accept(turn.person, turn.ctx.now):
        register(turn)
    else:
        expire_offer(turn)


def expire_offer(turn: Turn) -> None:
    """The hold is over: pass the seat on; the person leaves the waiting list (see above)."""
    expired = turn.state.offer_expires
    turn.seats.release(turn.person)
    turn.status = Status.CANCELLED
    turn.state.left = Left.OFFER_EXPIRED
    turn.state.offer_expires = None
    turn.note("offer_expired", expired_at=expired.isoformat() if expired else None)
    turn.say("offer_expired")
    turn.offer_seats()


def hold_timer(turn: Turn) -> None:
    """The hold timer fired (perhaps late): expire the offer if it really is over."""
    expires = turn.seats.offers.get(turn.person)
    if turn.status != "offered" or expires is None or turn.ctx.now < expires:
        turn.note("hold_timer_ignored", due_at=str(turn.ctx.message.payload.get("due_at", "")))
        return
    expire_offer(turn)


def calendar_reply(turn: Turn) -> None:
    """Accept/tentative is recorded; decline asks; replies to an older invite are stale."""
    answer = turn.ctx.message.calendar
    if answer is None:
        turn.note("calendar_ignored", reason="a calendar reply without its answer")
        return
    sequence = turn.state.sequence
    if sequence is None or answer.uid != turn.state.invite_uid:
        turn.note("calendar_ignored", reason="not our current invite", uid=answer.uid)
        return
    if answer.sequence < sequence:
        turn.note(
            "calendar_stale", partstat=answer.partstat, sequence=answer.sequence, current=sequence
        )
        return
    partstat = answer.partstat.upper()
    if partstat in CALENDAR_ATTENDANCE:
        turn.state.attendance = CALENDAR_ATTENDANCE[partstat]
        turn.note("calendar", partstat=partstat)
    elif partstat == "DECLINED" and turn.status in ("registered", "waiting", "offered"):
        turn.state.attendance = Attendance.DECLINED
        turn.state.pending_cancel = True
        turn.say("declined_ask")
    else:
        turn.note("calendar_ignored", reason=f"{partstat} while {turn.status}")


def status_context(turn: Turn) -> dict[str, Any]:
    """What the status message shows besides the answers."""
    expires = turn.state.offer_expires
    attendance, left = turn.state.attendance, turn.state.left
    return {
        "status": turn.status,
        "place": turn.seats.place(turn.person),
        "expires_at": turn.local(expires) if expires else None,
        "attendance": attendance.value if attendance else None,
        "left": left.value if left else None,
    }

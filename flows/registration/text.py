"""Reading registration commands, and building the invite and the question messages.

Commands are recognised only when they are the whole message ("status", "cancel") or a
command word followed by its argument ("change diet"), so an answer such as "status quo" to
a text question is never mistaken for one. A few translations are accepted because they
cost nothing; the templates name the English words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.common.times import zone_time
from flows.common.words import fold, is_help, is_no, is_yes
from flows.config import GatheringConfig
from gateway.model import Invite, Outgoing, PersonId

FLOW = "registration"

_WORDS = {
    "status": "status summary zusammenfassung resume resumen resumo overzicht",
    "cancel": "cancel stornieren absagen abmelden annuler cancelar annuleren afmelden",
    "change": "change edit aendern andern modifier cambiar mudar alterar wijzigen",
    "confirm": "confirm bestaetigen bestatigen confirmer confirmar bevestigen",
    # What a List-Unsubscribe mail says: no more announcements (practical messages go on).
    "unsubscribe": "unsubscribe abbestellen desabonner desuscribir descadastrar uitschrijven",
    "start": "hello hi hey register join start hallo moin bonjour salut hola ola oi "
    "anmelden inscrire registrar aanmelden",
}
_COMMANDS = {word: command for command, words in _WORDS.items() for word in words.split()}


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    argument: str = ""


def read_command(text: str) -> Command | None:
    """The command a message gives, if the whole message is one.

    Names: help, status, cancel, change (with an optional argument), confirm, start,
    unsubscribe, yes, no.
    """
    words = fold(text).strip(" .!").split()
    if not words:
        return None
    if is_help(text):
        return Command("help")
    head = words[0].strip(",:!")
    command = _COMMANDS.get(head)
    if command == "change":
        return Command("change", " ".join(words[1:]))
    if command == "start" and len(words) <= 3:
        return Command("start")
    if command is not None and len(words) == 1:
        return Command(command)
    if len(words) <= 3 and is_yes(text):
        return Command("yes")
    if len(words) <= 3 and is_no(text):
        return Command("no")
    return None


def say(person: PersonId, message: str, **context: Any) -> Outgoing:
    return Outgoing(to=person, template=f"{FLOW}/{message}", context=context)


def invite_uid(gathering: GatheringConfig, person: PersonId) -> str:
    """Stable per person and gathering, so every REQUEST and CANCEL updates the same event."""
    return f"{gathering.slug}-registration-{person}@gathering-gateway"


def invite(gathering: GatheringConfig, person: PersonId, sequence: int, method: str) -> Invite:
    """The gathering as a calendar event; all-day gatherings end on their last day (inclusive)."""
    zone = gathering.zone
    return Invite(
        uid=invite_uid(gathering, person),
        sequence=sequence,
        method=method,
        summary=gathering.name,
        start=zone_time(gathering.starts, zone),
        end=zone_time(gathering.ends, zone),
        tzid=gathering.timezone,
        location=gathering.venue,
        description=gathering.description,
        all_day=gathering.all_day,
    )

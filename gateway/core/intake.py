"""What every inbound message loses before a flow sees it: characters that act, not read.

Names and answers travel on: into other people's mail, a crew room, the CSV an organiser opens
and the terminal that prints `status`. A terminal escape (ESC), a bell, a NUL or a bidi
override (which makes `gnp.exe` read as `exe.png`) in one of them would act there. They are
removed once, here, for every channel; line breaks and tabs are kept.
"""

from __future__ import annotations

import re
from dataclasses import replace

from gateway.model import Identity, InboundMessage

#: C0 controls but tab and line feed, DEL, C1 controls, and the bidi embedding, override and
#: isolate characters (U+202A–U+202E, U+2066–U+2069). Plain direction marks (U+200E, U+200F)
#: stay: right-to-left text needs them and they cannot reorder what follows.
_ACTING = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """`text` without control characters; CR LF and lone CR become LF."""
    return _ACTING.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def clean_name(name: str) -> str:
    """A display name on one line."""
    return " ".join(clean_text(name).split())


def clean_message(message: InboundMessage) -> InboundMessage:
    """The message with its free text, answers, choice and sender's name cleaned."""
    sender = message.sender
    if sender is not None and sender.display_name:
        sender = Identity(sender.kind, sender.address, clean_name(sender.display_name) or None)
    if _clean(message, sender):
        return message  # most are: copying the message is then all the work
    return replace(
        message,
        text=clean_text(message.text),
        answers={n: clean_text(a) for n, a in message.answers.items()},
        choice=clean_text(message.choice) if message.choice is not None else None,
        sender=sender,
    )


def _clean(message: InboundMessage, sender: Identity | None) -> bool:
    """Whether cleaning changes nothing in `message` (its sender's name already cleaned)."""
    texts = [message.text, *message.answers.values()]
    if message.choice is not None:
        texts.append(message.choice)
    # Identities compare by address alone: the name must be compared by itself.
    same_name = (sender.display_name if sender else None) == (
        message.sender.display_name if message.sender else None
    )
    return same_name and all(clean_text(t) == t for t in texts)

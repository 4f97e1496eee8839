"""Matrix events ↔ gateway messages. Pure: raw event dicts in, `InboundMessage` out, and
outbox items to event content dicts.

The codec reads the raw event JSON (`event.source` of a nio event, already decrypted by nio
when E2EE is on) instead of nio's typed classes: nio surfaces polls and reactions as
`UnknownEvent` anyway, and the raw form is exactly what the fixtures in
`tests/fixtures/matrix/` capture from real clients.

`parse_event` never raises. A person's event it cannot read becomes a REJECTED message with
a reason (the person is told); events that are not a person talking to us (state events,
notices of other bots, reactions we do not understand, our own echo) give `None`.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.model import Channel, Identity, InboundKind, InboundMessage

log = logging.getLogger(__name__)

POLL_START = "m.poll.start"
POLL_START_UNSTABLE = "org.matrix.msc3381.poll.start"
POLL_RESPONSE = "m.poll.response"
POLL_RESPONSE_UNSTABLE = "org.matrix.msc3381.poll.response"
TEXT_UNSTABLE = "org.matrix.msc1767.text"

#: Reaction keys that mean yes / no, compared after removing emoji variation selectors and
#: skin-tone modifiers (Element sends "✅", iOS keyboards "✔️" = U+2714 U+FE0F, "👍🏽"…).
YES_KEYS = frozenset({"✅", "✔", "☑", "👍", "🆗", "yes"})
NO_KEYS = frozenset({"❌", "✖", "✗", "❎", "👎", "🚫", "no"})
_EMOJI_NOISE = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff\u200d]")
_MEDIA = frozenset({"m.image", "m.file", "m.audio", "m.video", "m.location", "m.sticker"})
_TEXTUAL = frozenset({"m.text", "m.emote"})


def parse_event(
    source: Mapping[str, Any], *, room_id: str, bot_user_id: str
) -> InboundMessage | None:
    """One timeline event of a room the bot is in → an inbound message, or None to skip."""
    try:
        return _parse(source, room_id, bot_user_id)
    except Exception:  # a codec bug must not stop the sync loop; the event is skipped
        log.exception("cannot parse event %r in %s", source.get("event_id"), room_id)
        return None


def _parse(source: Mapping[str, Any], room_id: str, bot: str) -> InboundMessage | None:
    event_id, sender, etype = source.get("event_id"), source.get("sender"), source.get("type")
    if not (isinstance(event_id, str) and isinstance(sender, str) and isinstance(etype, str)):
        log.info("skipping event without id/sender/type in %s", room_id)
        return None
    if sender == bot or "state_key" in source:
        return None
    unsigned = source.get("unsigned")
    if isinstance(unsigned, Mapping) and "redacted_because" in unsigned:
        return None
    content = source.get("content")
    base = _Base(event_id, sender, room_id, etype, _timestamp(source.get("origin_server_ts")))
    if etype == "m.room.redaction":
        redacts = source.get("redacts") or (content or {}).get("redacts")
        if not isinstance(redacts, str):
            return base.rejected("the deletion did not say which message it removes")
        return base.make(InboundKind.REDACTION, replaces=redacts)
    if not isinstance(content, Mapping):
        return base.rejected("the message has no readable content")
    if etype == "m.room.encrypted":
        return base.rejected(
            "your message was encrypted with keys the gateway did not receive; "
            "please send it again (and check that your client shares keys with unverified devices)"
        )
    if etype == "m.room.message":
        return _message(base, content)
    if etype == "m.reaction":
        return _reaction(base, content)
    if etype in (POLL_RESPONSE, POLL_RESPONSE_UNSTABLE):
        return _poll_response(base, content)
    if etype == "m.sticker":
        return base.rejected("stickers cannot be read; please answer with text")
    return None


class _Base:
    """The fields every message of one event shares."""

    def __init__(self, event_id: str, sender: str, room_id: str, etype: str, at: datetime) -> None:
        self.event_id, self.sender, self.room_id, self.etype, self.at = (
            event_id,
            sender,
            room_id,
            etype,
            at,
        )

    def make(self, kind: InboundKind, **fields: Any) -> InboundMessage:
        return InboundMessage(
            channel=Channel.MATRIX,
            external_id=self.event_id,
            kind=kind,
            received_at=self.at,
            sender=Identity.matrix(self.sender),
            meta={"room_id": self.room_id, "event_type": self.etype},
            **fields,
        )

    def rejected(self, reason: str) -> InboundMessage:
        return self.make(InboundKind.REJECTED, text=reason)


def _message(base: _Base, content: Mapping[str, Any]) -> InboundMessage | None:
    relates = content.get("m.relates_to")
    relates = relates if isinstance(relates, Mapping) else {}
    if relates.get("rel_type") == "m.replace":
        original = relates.get("event_id")
        new = content.get("m.new_content")
        body = new.get("body") if isinstance(new, Mapping) else _strip_star(content.get("body"))
        if not isinstance(original, str) or not isinstance(body, str):
            return base.rejected("the edit did not say which message it changes")
        return base.make(InboundKind.EDIT, text=body.strip(), replaces=original)
    msgtype = content.get("msgtype")
    if msgtype == "m.notice":
        return None  # notices are what bots send; answering them could start a bot loop
    if msgtype in _MEDIA:
        return base.rejected("files, images and locations cannot be read; please answer with text")
    body = content.get("body")
    if msgtype not in _TEXTUAL or not isinstance(body, str):
        return base.rejected(f"messages of type {msgtype!r} cannot be read; please send text")
    reply_to = _reply_target(relates)
    text = strip_reply_fallback(body) if reply_to else body
    if not text.strip():
        return base.rejected("the message was empty")
    return base.make(InboundKind.TEXT, text=text.strip(), in_reply_to=reply_to)


def _reply_target(relates: Mapping[str, Any]) -> str | None:
    """The event a message answers: a rich reply, or the root of a thread it was posted in."""
    in_reply = relates.get("m.in_reply_to")
    reply_id = in_reply.get("event_id") if isinstance(in_reply, Mapping) else None
    if relates.get("rel_type") == "m.thread":
        # Inside a thread, clients set m.in_reply_to to the latest event "as a fallback";
        # the thread root is the message of ours the person is answering.
        if relates.get("is_falling_back", False) or not isinstance(reply_id, str):
            root = relates.get("event_id")
            return root if isinstance(root, str) else None
    return reply_id if isinstance(reply_id, str) else None


def strip_reply_fallback(body: str) -> str:
    """Remove the "> <@bot:hs> quoted text" block older clients put before a reply's text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


def _strip_star(body: object) -> object:
    """Edits without m.new_content carry "* new text" in body (the fallback for old clients)."""
    return body[2:] if isinstance(body, str) and body.startswith("* ") else body


def _reaction(base: _Base, content: Mapping[str, Any]) -> InboundMessage | None:
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping) or relates.get("rel_type") != "m.annotation":
        return base.rejected("the reaction did not say which message it reacts to")
    key, target = relates.get("key"), relates.get("event_id")
    if not isinstance(key, str) or not isinstance(target, str):
        return base.rejected("the reaction did not say which message it reacts to")
    choice = reaction_choice(key)
    if choice is None:
        log.info("ignoring reaction %r to %s from %s", key, target, base.sender)
        return None
    return base.make(InboundKind.CHOICE, choice=choice, in_reply_to=target, text=key)


def reaction_choice(key: str) -> str | None:
    """ "yes"/"no" for a reaction key that means it, else None."""
    bare = _EMOJI_NOISE.sub("", key).strip().lower()
    if bare in YES_KEYS:
        return "yes"
    if bare in NO_KEYS:
        return "no"
    return None


def _poll_response(base: _Base, content: Mapping[str, Any]) -> InboundMessage | None:
    relates = content.get("m.relates_to")
    poll = relates.get("event_id") if isinstance(relates, Mapping) else None
    if not isinstance(poll, str):
        return base.rejected("the poll vote did not say which poll it answers")
    unstable = content.get(POLL_RESPONSE_UNSTABLE)
    answers: object = content.get("m.selections")
    if answers is None and isinstance(unstable, Mapping):
        answers = unstable.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        return base.rejected("the poll vote could not be read")
    if not answers:
        log.info("ignoring withdrawn vote %s on poll %s", base.event_id, poll)
        return None
    if not all(a.isdigit() and int(a) >= 1 for a in answers):
        # Our polls number their answers "1", "2", …: anything else is someone else's poll.
        log.info("ignoring vote %s on a poll that is not ours (%s)", base.event_id, poll)
        return None
    numbers = sorted({int(a) for a in answers})
    return base.make(InboundKind.CHOICE, choice=",".join(map(str, numbers)), in_reply_to=poll)


def _timestamp(value: object) -> datetime:
    if isinstance(value, int) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return datetime.now(UTC)


# -- outbound ----------------------------------------------------------------------------


def txn_id(idempotency_key: str) -> str:
    """The Matrix transaction id of an outbox row: stable across retries and restarts."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


#: Homeservers refuse events over 65,536 bytes (the Matrix spec's limit), JSON included; a
#: message's text is sent in parts of at most this many bytes (HTML is dropped for those).
MAX_TEXT_BYTES = 24_000


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """`text` in parts of at most `limit` UTF-8 bytes, cut at paragraph, then line, then
    word boundaries where there is one, so a long message arrives whole, in order."""
    parts: list[str] = []
    rest = text
    while len(rest.encode()) > limit:
        head = rest.encode()[:limit].decode("utf-8", errors="ignore")
        cut = max(head.rfind("\n\n"), head.rfind("\n"), head.rfind(" "))
        if cut < len(head) // 2:
            cut = len(head)
        parts.append(head[:cut].rstrip())
        rest = rest[cut:].lstrip()
    parts.append(rest)
    return parts


def text_content(
    text: str, html_body: str = "", *, in_reply_to: str | None = None
) -> dict[str, Any]:
    """An `m.room.message` of msgtype m.text, with HTML when we have it, replying if asked."""
    content: dict[str, Any] = {"msgtype": "m.text", "body": text}
    if html_body:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html_body
    if in_reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": in_reply_to}}
    return content


def poll_content(text: str, options: Sequence[str], *, max_selections: int = 1) -> dict[str, Any]:
    """An `m.poll.start` content with the stable and the MSC3381 (Element) forms side by side.

    Answer ids are "1", "2", … so a vote maps back to the option's 1-based number without a
    lookup. `body` and the text fallbacks list the numbered options, so a client that does
    not render polls still shows the question, and the person can answer with a number.
    """
    question, fallback = poll_texts(text, options)
    max_sel = max(1, min(max_selections, len(options)))
    return {
        "body": fallback,
        "m.text": [{"body": fallback}],
        "m.poll": {
            "kind": "m.disclosed",
            "max_selections": max_sel,
            "question": {"m.text": [{"body": question}]},
            "answers": [
                {"m.id": str(i), "m.text": [{"body": option}]}
                for i, option in enumerate(options, 1)
            ],
        },
        TEXT_UNSTABLE: fallback,
        POLL_START_UNSTABLE: {
            "kind": "org.matrix.msc3381.poll.disclosed",
            "max_selections": max_sel,
            "question": {TEXT_UNSTABLE: question, "body": question, "msgtype": "m.text"},
            "answers": [
                {"id": str(i), TEXT_UNSTABLE: option} for i, option in enumerate(options, 1)
            ],
        },
    }


def poll_texts(text: str, options: Sequence[str]) -> tuple[str, str]:
    """The poll's question and its text fallback, each listing the options at most once.

    The question templates number the options themselves (for email, and for clients that
    show no polls). A poll widget shows its options as buttons, so those lines are taken out
    of the widget's question; the fallback adds the numbered list only when the text lacks it.
    """
    numbered = [f"{i}. {option}" for i, option in enumerate(options, 1)]
    wanted = {_squash(line) for line in numbered}
    lines = text.split("\n")
    listed = {_squash(line) for line in lines} & wanted
    if not options or listed != wanted:
        return text, "\n".join([text, "", *numbered])
    question = "\n".join(line for line in lines if _squash(line) not in wanted)
    return re.sub(r"\n{3,}", "\n\n", question).strip(), text


def _squash(line: str) -> str:
    return " ".join(line.split()).casefold()


def file_content(
    name: str,
    url: str,
    size: int,
    mimetype: str,
    *,
    encryption: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An `m.file` message for an uploaded document (organisers' CSV exports, attachments).

    An encrypted room's file carries its key (`encryption`, from nio's encrypting upload)
    in `file` instead of a plain `url` (the spec's EncryptedFile)."""
    content: dict[str, Any] = {
        "msgtype": "m.file",
        "body": name,
        "filename": name,
        "info": {"mimetype": mimetype, "size": size},
    }
    if encryption:
        content["file"] = {**encryption, "url": url}
    else:
        content["url"] = url
    return content


def attachment_txn_id(idempotency_key: str, index: int) -> str:
    """The txn_id of a row's `index`-th file event: a resend posts each file once."""
    return txn_id(f"{idempotency_key}#file{index}")


def notice_content(text: str) -> dict[str, Any]:
    """A plain `m.notice`: how the bot answers commands (other bots do not answer notices)."""
    return {
        "msgtype": "m.notice",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": "<pre>" + html.escape(text) + "</pre>",
    }


def mentions_user(content: Mapping[str, Any], user_id: str) -> bool:
    """Whether a message mentions `user_id` (intentional mentions, or the id in the body)."""
    mentions = content.get("m.mentions")
    if isinstance(mentions, Mapping):
        ids = mentions.get("user_ids")
        if isinstance(ids, list) and user_id in ids:
            return True
    body = content.get("body")
    return isinstance(body, str) and user_id in body

"""Keep only what a person typed in a reply; recognise inline answers to numbered questions.

Clients mark quoted history in three ways, and all three must be handled:

* ``>``-prefixed lines, usually introduced by an attribution line ("On ... wrote:") that
  Gmail localises and wraps over two lines (Gmail, Apple Mail, Thunderbird, iOS);
* an unquoted header block (``From: / Sent: / To: / Subject:``, localised) with or without
  a separator line above it (Outlook desktop, web, iOS, Android, Samsung, Mail for Windows);
* HTML containers (``gmail_quote``, ``<blockquote type="cite">``, ``divRplyFwdMsg`` ...),
  which are pruned before the HTML is turned into text.

Everything here is line based and uses bounded regexes: replies can be megabytes of
pasted logs, and the codec must not stall on them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.channels.email.html import html_to_text

__all__ = ["extract_answers", "extract_reply", "normalise"]

MAX_CHARS = 400_000  # nobody types more; bounds the work on pasted dumps
_MAX_MARKER_LINE = 300  # attribution lines and header lines are short

_QUOTE = re.compile(r"^\s{0,3}>")
_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}\s*(?:original\s+message|ursprüngliche\s+nachricht"
    r"|originalnachricht|message\s+d'origine|mensaje\s+original|mensagem\s+original"
    r"|oorspronkelijk\s+bericht|messaggio\s+originale|forwarded\s+message"
    r"|weitergeleitete\s+nachricht|message\s+transféré|mensaje\s+reenviado"
    r"|doorgestuurd\s+bericht|mensagem\s+encaminhada)\s*-{2,}"
    r"|_{20,}"
    r"|begin\s+forwarded\s+message:|anfang\s+der\s+weitergeleiteten\s+nachricht:"
    r"|début\s+du\s+message\s+réexpédié\s*:)\s*$",
    re.IGNORECASE,
)
# Keys of the header block Outlook-like clients put above the quoted original, by role.
_HEADER_KEYS = {
    "from": ("from", "von", "de", "van", "da", "från", "fra", "od"),
    "sent": (
        "sent",
        "gesendet",
        "envoyé",
        "enviado",
        "enviada",
        "verzonden",
        "inviato",
        "date",
        "datum",
        "fecha",
        "data",
        "skickat",
        "sendt",
    ),
    "to": ("to", "an", "à", "a", "para", "aan", "till", "til", "do"),
    "cc": ("cc", "kopie", "copie"),
    "subject": (
        "subject",
        "betreff",
        "objet",
        "asunto",
        "assunto",
        "onderwerp",
        "oggetto",
        "ämne",
        "emne",
        "temat",
    ),
}
_KEY_ROLE = {key: role for role, keys in _HEADER_KEYS.items() for key in keys}
_HEADER_LINE = re.compile(r"^\s*\*?\s*([^\W\d_]{1,12})\s*\*?\s*:\s*\*?", re.UNICODE)
_ATTRIBUTION_END = re.compile(
    r"(?:\bwrote|\bwrites|\ba\s+écrit|\bschrieb|\bescribió|\bescreveu|\bschreef"
    r"|\bha\s+scritto|\bskrev|\bnapisał|<[^<>@\s]{1,64}@[^<>\s]{1,255}>\)?)"
    r"[^\n]{0,80}:\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(
    r"^\s*(?:on|le|am|el|em|op|il|den|w\s+dniu|\d{4}[年/.-])", re.IGNORECASE
)
_SIGNATURE = re.compile(r"^--\s?$")
_URL_IN_ANGLES = re.compile(r"<[^<>\s]{1,300}>")
_MOBILE = re.compile(
    r"^\s*(?:sent\s+from\s+my\s+(?:iphone|ipad|galaxy|samsung[\w ]{0,30}|android"
    r"[\w ]{0,30}|mobile[\w ]{0,30}|blackberry[\w ]{0,30}|huawei[\w ]{0,30}|pixel[\w ]{0,20})"
    r"|sent\s+from\s+(?:mail|outlook)\s+for\s+(?:windows|ios|android|mac)(?:\s+1[01])?"
    r"|sent\s+from\s+(?:yahoo\s+mail[\w ]{0,30}|samsung\s+mobile|proton\s*mail"
    r"[\w ]{0,30})|get\s+outlook\s+for\s+(?:ios|android|mac)"
    r"|envoyé\s+de\s+mon\s+(?:iphone|ipad|smartphone[\w ]{0,30})"
    r"|von\s+meinem\s+(?:iphone|ipad|smartphone|samsung[\w ]{0,30})\s+gesendet"
    r"|enviado\s+desde\s+mi\s+(?:iphone|ipad|smartphone[\w ]{0,30})"
    r"|enviado\s+do\s+meu\s+(?:iphone|ipad|smartphone[\w ]{0,30})"
    r"|verzonden\s+(?:vanaf|met)\s+(?:mijn\s+)?(?:iphone|ipad)"
    r"|inviato\s+da\s+(?:iphone|ipad))[ \t.!]*$",
    re.IGNORECASE,
)
_LEGAL = re.compile(
    r"^\s*(?:confidentiality\s+notice|disclaimer\s*:|legal\s+notice"
    r"|this\s+(?:e-?mail|message|communication)\b[^\n]{0,120}\bconfidential"
    r"|the\s+information\s+(?:contained\s+)?in\s+this\s+(?:e-?mail|message)"
    r"|diese\s+(?:e-?mail|nachricht)\s+enthält\s+vertrauliche"
    r"|ce\s+(?:message|courriel|e-?mail)\b[^\n]{0,120}\bconfidenti"
    r"|este\s+(?:mensaje|correo)\b[^\n]{0,120}\bconfidencial"
    r"|esta\s+mensagem\b[^\n]{0,120}\bconfidencia"
    r"|dit\s+(?:e-?mail)?bericht\b[^\n]{0,120}\b(?:vertrouwelijk|uitsluitend\s+bestemd)"
    r"|please\s+consider\s+the\s+environment)",
    re.IGNORECASE,
)
_BLANKS = re.compile(r"\n{3,}")
# Closings people end a mail with (en/de/fr/es/pt/nl), on a line of their own.
_CLOSING = re.compile(
    r"^\s*(?:(?:best|kind|warm|many\s+thanks\s+and)?\s*regards|best(?:\s+wishes)?|cheers"
    r"|sincerely|yours(?:\s+sincerely|\s+truly)?|thanks(?:\s+and\s+regards)?|thank\s+you"
    r"|(?:viele|liebe|beste|herzliche)\s+grüße|mit\s+freundlichen\s+grüßen|lg|vg|mfg"
    r"|cordialement|bien\s+à\s+vous|amitiés|(?:un\s+)?saludos?|atentamente|un\s+abrazo"
    r"|abraços|atenciosamente|(?:met\s+)?vriendelijke\s+groet(?:en)?|groetjes|groeten)"
    r"\s*[,.!]?\s*$",
    re.IGNORECASE,
)
#: At most this many lines after a closing are taken for a signature block.
_SIGNATURE_LINES = 8
_QUESTION = re.compile(r"^\s{0,3}>\s*(\d{1,2})\s*[.)]\s+\S")
_OWN_NUMBERED = re.compile(
    r"^\s*(?:q\s*)?(\d{1,2})\s*(?:[.)](?!\d)|:(?!\d)|\s-\s|=)\s*(\S[^\n]*)$",
    re.IGNORECASE,
)


def normalise(text: str) -> str:
    """The canonical whitespace of extracted text: no trailing spaces, ≤1 blank line in a row."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip("\n")


def _lines(text: str) -> list[str]:
    return normalise(text[:MAX_CHARS]).split("\n")


def _is_quote(line: str) -> bool:
    return bool(_QUOTE.match(line))


def _header_role(line: str) -> str | None:
    if len(line) > _MAX_MARKER_LINE:
        return None
    match = _HEADER_LINE.match(line)
    return _KEY_ROLE.get(match.group(1).lower()) if match else None


def _is_header_block(lines: Sequence[str], start: int) -> bool:
    """A ``From:`` line opening ≥3 header lines that include a date and a subject.

    A person may well type "From: Berlin" or "To: everyone" in a reply; only a block with
    the shape Outlook writes counts as the start of quoted history.
    """
    if _header_role(lines[start]) != "from":
        return False
    roles = {"from"}
    count, strays = 1, 0
    for line in lines[start + 1 : start + 12]:
        role = _header_role(line)
        if role is None:
            strays += 1  # wrapped To:/Cc: lists or a blank line inside the block
            if strays > 3:
                break
            continue
        count += 1
        roles.add(role)
        if role == "subject":
            break
    return count >= 3 and {"sent", "subject"} <= roles


def _history_start(lines: Sequence[str]) -> int:
    """Index of the first line of unquoted history (separator or header block), or len."""
    for index, line in enumerate(lines):
        if _is_quote(line) or len(line) > _MAX_MARKER_LINE:
            continue
        if _SEPARATOR.match(line) or _is_header_block(lines, index):
            return index
    return len(lines)


def _next_content(lines: Sequence[str], index: int) -> str | None:
    for line in lines[index:]:
        if line.strip():
            return line
    return None


def _attribution_length(lines: Sequence[str], index: int) -> int:
    """1 or 2 if an attribution line (maybe wrapped by Gmail) starts here, else 0.

    An attribution only counts when quoted text or nothing follows it, so a person's
    own sentence ending in "wrote:" is kept unless it really introduces a quote.
    """
    line = lines[index]
    if _is_quote(line) or not line.strip() or len(line) > _MAX_MARKER_LINE:
        return 0
    candidates = [(line, 1)]
    wrapped = index + 1 < len(lines) and not _is_quote(lines[index + 1])
    if wrapped and _ATTRIBUTION_START.match(line):
        candidates.append((f"{line} {lines[index + 1]}", 2))
    for candidate, length in candidates:
        if len(candidate) <= _MAX_MARKER_LINE and _ATTRIBUTION_END.search(candidate):
            following = _next_content(lines, index + length)
            if following is None or _is_quote(following):
                return length
    return 0


@dataclass
class _Block:
    start: int
    end: int  # exclusive
    attributed: bool


def _quote_blocks(lines: Sequence[str], attribution: set[int]) -> list[_Block]:
    """Runs of quote lines, blank lines inside a run joining its parts."""
    blocks: list[_Block] = []
    index = 0
    while index < len(lines):
        if not _is_quote(lines[index]):
            index += 1
            continue
        start = end = index
        while index < len(lines) and (_is_quote(lines[index]) or not lines[index].strip()):
            if _is_quote(lines[index]):
                end = index + 1
            index += 1
        previous = next((i for i in range(start - 1, -1, -1) if lines[i].strip()), None)
        blocks.append(_Block(start, end, previous in attribution))
        index = end
    return blocks


def _dropped_lines(lines: Sequence[str]) -> set[int]:
    """Indexes of attribution and quoted lines.

    A lone ``> 5 people`` line typed above any real quote is the person's text; a run of
    quote lines, an attributed one, or any quote after history began is history.  Two or
    more lone quote lines before any real quote are a trimmed inline reply.
    """
    attribution: set[int] = set()
    index = 0
    while index < len(lines):
        length = _attribution_length(lines, index)
        attribution.update(range(index, index + length))
        index += max(length, 1)
    blocks = _quote_blocks(lines, attribution)
    real = [b.end - b.start > 1 or b.attributed for b in blocks]
    first_real = real.index(True) if True in real else len(blocks)
    keep_lone = first_real < 2
    # Quote blocks the person typed above the history (the last attributed block: "my
    # doctor wrote:" and the letter) are theirs, unless they quote our numbered questions.
    history = max((p for p, b in enumerate(blocks) if b.attributed), default=None)
    dropped = set(attribution)
    for position, block in enumerate(blocks):
        if position < first_real and keep_lone:
            continue
        if history is not None and position < history and not _quotes_our_form(lines, block):
            dropped -= _attribution_of(lines, block, attribution)
            continue
        dropped.update(i for i in range(block.start, block.end) if _is_quote(lines[i]))
    return dropped


def _attribution_of(lines: Sequence[str], block: _Block, attribution: set[int]) -> set[int]:
    """The attribution lines right above a quote block (blank lines between allowed)."""
    found: set[int] = set()
    index = block.start - 1
    while index >= 0 and (index in attribution or not lines[index].strip()):
        if index in attribution:
            found.add(index)
        index -= 1
    return found


def _quotes_our_form(lines: Sequence[str], block: _Block) -> bool:
    return any(_QUESTION.match(lines[i]) for i in range(block.start, block.end))


def _clean_segment(segment: list[str]) -> list[str]:
    """Drop a '-- ' signature, a legal footer and mobile sign-off lines from typed text,
    and a signature block after a closing ("Best regards," name, title, company, phone)."""
    out: list[str] = []
    for line in segment:
        if _SIGNATURE.match(line) or (len(line) <= _MAX_MARKER_LINE and _LEGAL.match(line)):
            break
        if len(line) <= _MAX_MARKER_LINE and _MOBILE.match(_URL_IN_ANGLES.sub("", line)):
            continue
        out.append(line)
    return _without_signature_block(out)


def _without_signature_block(lines: list[str]) -> list[str]:
    """Cut at the last closing line when only a short signature block follows it: a few
    short lines to the end (name, title, company, phone), as corporate clients append
    without a '-- ' delimiter."""
    for index in range(len(lines) - 1, max(-1, len(lines) - _SIGNATURE_LINES - 2), -1):
        if _CLOSING.match(lines[index]):
            after = [line for line in lines[index + 1 :] if line.strip()]
            # The closing and the name stay; title, company, phone and legal lines go.
            if 1 < len(after) <= _SIGNATURE_LINES and all(len(a) <= 100 for a in after):
                name = next(i for i in range(index + 1, len(lines)) if lines[i].strip())
                return lines[: name + 1]
            break
    return lines


def extract_reply(text: str, *, html: str | None = None) -> str:
    """Only the new text of a reply: no quoted history, attribution, signature or footer.

    ``html`` is used when the mail has no usable plain-text body (Outlook web sends
    HTML-only replies); its quote containers are pruned before conversion.
    """
    if not text.strip() and html:
        text = html_to_text(html)
    lines = _lines(text)
    lines = lines[: _history_start(lines)]
    dropped = _dropped_lines(lines)
    segments: list[list[str]] = [[]]
    for index, line in enumerate(lines):
        if index in dropped:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append(line)
    kept = ["\n".join(_clean_segment(segment)) for segment in segments]
    return normalise("\n\n".join(part for part in kept if part.strip()))


def _inline_answers(lines: Sequence[str], limit: int) -> dict[int, str]:
    """Answers typed under quoted ``> N. question`` lines."""
    answers: dict[int, str] = {}
    current: int | None = None
    collected: list[str] = []

    def flush() -> None:
        answer = "\n".join(collected).strip()
        if current is not None and answer and current not in answers:
            answers[current] = answer
        collected.clear()

    for line in lines:
        question = _QUESTION.match(line)
        if question:
            flush()
            number = int(question.group(1))
            current = number if 1 <= number <= limit else None
        elif _is_quote(line) or not line.strip():
            if collected:
                flush()
                current = None
        elif current is not None:
            collected.append(line.strip())
    flush()
    return answers


def _numbered_answers(new_text: str, limit: int) -> dict[int, str]:
    """Answers typed as the person's own numbered lines: ``1. vegan``, ``2) 3``, ``3: yes``."""
    answers: dict[int, str] = {}
    for line in new_text.split("\n"):
        match = _OWN_NUMBERED.match(line)
        if match:
            number = int(match.group(1))
            if 1 <= number <= limit and number not in answers:
                answers[number] = match.group(2).strip()
    return answers


def extract_answers(
    full_text: str, new_text: str, question_count: int | None = None
) -> dict[int, str]:
    """Answers to the gateway's numbered questions, by question number.

    Inline answers are looked for in the whole body (they live between quoted questions);
    numbered answers only in the new text, so numbered lines of an unquoted Outlook history
    are never mistaken for answers.  ``question_count`` bounds the accepted numbers.
    """
    limit = question_count if question_count is not None else 99
    lines = _lines(full_text)
    inline = _inline_answers(lines[: _history_start(lines)], limit)
    return inline or _numbered_answers(new_text, limit)

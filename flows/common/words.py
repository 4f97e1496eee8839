"""The words people answer with: yes/no/skip/help in six languages, and written dates.

Kept apart from `forms.py` because it is vocabulary, not logic: adding a language means
adding words here. Everything is compared after `fold` (lower case, no accents), so "Sí",
"JA" and "não" match their plain spellings.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

# Words people use for yes/no in the languages we expect (en, de, fr, es, pt, nl),
# compared after folding case and accents, so "sí", "Sim" and "JA" all match.
YES_WORDS = frozenset(
    "yes y yeah yep yup sure ok okay true ja j jawohl jep klar oui ouais si sim s claro "
    "vale wel zeker ✅ 👍 ✔ ✔️".split()
)
NO_WORDS = frozenset("no n nope nah false nein ne nee non nao niet geen ❌ 👎 ✖ ✗".split())
SKIP_WORDS = frozenset(
    "skip pass - n/a na none ueberspringen uberspringen weiter passer saltar pular "
    "overslaan".split()
)
HELP_WORDS = frozenset("? help hilfe aide ayuda ajuda hulp".split())
# What people write to a welcome message before they start answering, as whole messages
# (folded, without the punctuation and emoji around them), in en/de/fr/es/pt/nl.
GREETINGS = frozenset(
    [
        *"hi hello hey hiya hallo hola ola oi salut bonjour moin servus hoi".split(),
        *"thanks thx ty cheers danke merci gracias obrigado obrigada bedankt".split(),
        *"cool great nice super perfect awesome".split(),
        "hi there",
        "hello there",
        "thank you",
        "thanks a lot",
        "many thanks",
        "thank you very much",
        "ok thanks",
        "okay thanks",
        "ok thank you",
        "danke schon",
        "vielen dank",
        "merci beaucoup",
        "muchas gracias",
        "dank je",
        "dank u",
        "good morning",
        "guten morgen",
        "buenos dias",
        "bom dia",
        "goedemorgen",
    ]
)


def fold(text: str) -> str:
    """Lower case, no accents, single spaces: the form in which answers are compared."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.split())


# Month names and abbreviations in en/de/fr/es/pt/nl, folded (lower case, no accents).
_MONTHS: dict[str, int] = {}
for _month_number, _names in enumerate(
    (
        "january januar janvier enero janeiro januari jan jän jaen",
        "february februar fevrier febrero fevereiro februari feb fev fév",
        "march maerz marz mars marzo marco maart mar mär mrt",
        "april avril abril apr avr abr",
        "may mai mayo maio mei",
        "june juni juin junio junho jun",
        "july juli juillet julio julho jul juil",
        "august aout agosto augustus aug ago",
        "september septembre septiembre setembro sep sept set",
        "october oktober octobre octubre outubro oct okt out",
        "november novembre noviembre novembro nov",
        "december dezember decembre diciembre dezembro dec dez dic",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS[fold(_name)] = _month_number


def _first_word(text: str) -> str:
    folded = fold(text)
    if not folded:
        return ""
    return folded.split()[0].strip(".,!;:()\"'")


def is_yes(text: str) -> bool:
    return _first_word(text) in YES_WORDS or fold(text) in YES_WORDS


def is_no(text: str) -> bool:
    return _first_word(text) in NO_WORDS or fold(text) in NO_WORDS


def is_skip(text: str) -> bool:
    return fold(text).strip(".!") in SKIP_WORDS


def is_greeting(text: str) -> bool:
    """A hello or a thank-you on its own: not an answer to anything."""
    words = re.sub(r"[^\w\s]", " ", fold(text))
    return " ".join(words.split()) in GREETINGS


def is_help(text: str) -> bool:
    return fold(text).strip(".!") in HELP_WORDS


def parse_date(raw: str, reference: date) -> date | None:
    """ISO, day-first numeric (14.07.2027, 14/7), and written forms in six languages.

    Numeric dates are read day first (as most of our participants write them) unless only
    month first makes sense (07/14/2027). A date without a year takes the year that puts it
    nearest to `reference` (the gathering's start), so "14 July" means this gathering's July.
    """
    text = fold(raw).replace(",", " ").replace(" de ", " ").rstrip(".")
    iso = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
    if iso:
        return _make(int(iso[1]), int(iso[2]), int(iso[3]))
    numeric = re.fullmatch(r"(\d{1,2})[./-](\d{1,2})(?:[./-](\d{2,4}))?", text)
    if numeric:
        first, second = int(numeric[1]), int(numeric[2])
        day, month = (second, first) if second > 12 >= first else (first, second)
        return _with_year(day, month, numeric[3], reference)
    words = re.findall(r"[a-z]+|\d+", text)
    numbers = [w for w in words if w.isdigit()]
    months = [m for w in words if not w.isdigit() and (m := _month(w)) is not None]
    if len(months) != 1 or not 1 <= len(numbers) <= 2:
        return None
    year = next((n for n in numbers if len(n) == 4), None)
    days = [n for n in numbers if len(n) <= 2]
    if len(days) != 1 or (len(numbers) == 2 and year is None):
        return None
    return _with_year(int(days[0]), months[0], year, reference)


def _month(word: str) -> int | None:
    word = word.rstrip(".")
    if word in _MONTHS:
        return _MONTHS[word]
    if len(word) >= 3:
        matches = {n for name, n in _MONTHS.items() if name.startswith(word)}
        if len(matches) == 1:
            return matches.pop()
    return None


def _with_year(day: int, month: int, year: str | None, reference: date) -> date | None:
    if year is not None:
        full = int(year) + (2000 if len(year) == 2 else 0)
        return _make(full, month, day)
    options = [
        d
        for y in (reference.year - 1, reference.year, reference.year + 1)
        if (d := _make(y, month, day)) is not None
    ]
    return min(options, key=lambda d: abs((d - reference).days), default=None)


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


_TIME = re.compile(
    r"^(?P<hour>\d{1,2})(?:\s*[:.h]\s*(?P<minute>\d{2}))?\s*(?P<half>am|pm|a\.m\.|p\.m\.|h|uhr)?$"
)


def parse_time(raw: str) -> str | None:
    """A time of day as "HH:MM": "14:30", "14.30", "14h30", "14h", "2pm", "2:30 pm", "9"."""
    found = _TIME.match(fold(raw).strip().rstrip("."))
    if found is None:
        return None
    hour, minute = int(found["hour"]), int(found["minute"] or 0)
    half = (found["half"] or "").replace(".", "")
    if half in ("am", "pm"):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"

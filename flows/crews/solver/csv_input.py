"""Spreadsheet input for the crew solver.

Columns (header row required, order free, names case-insensitive):

    id           required, unique
    name         display name (defaults to the id)
    languages    `;`-separated, e.g. `en;pt` (without this column everyone shares one language)
    facilitator  yes/no, true/false, 1/0, x or empty
    together     `;`-separated ids this person wants to share a crew with
    not_with     `;`-separated ids this person must not share a crew with
    pinned_crew  crew number counted from 1, or empty
    anything else  a categorical attribute (experience, gender, region, timezone,
                   travel_group, ...); empty cells mean "unknown"
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flows.crews.solver.model import AttributeRule, Mode, Person, Sizing, SolverInput

KNOWN = ("id", "name", "languages", "facilitator", "together", "not_with", "pinned_crew")
TRUE = {"yes", "y", "true", "1", "x"}
FALSE = {"no", "n", "false", "0", ""}
SHARED_LANGUAGE = "any"


class CsvError(ValueError):
    """A cell or header the parser cannot use; the message names line and column."""


@dataclass(frozen=True)
class CsvPeople:
    people: tuple[Person, ...]
    together: tuple[tuple[str, ...], ...]
    not_with: tuple[tuple[str, str], ...]
    pins: Mapping[str, int]
    attribute_columns: tuple[str, ...]
    travel_attribute: str | None = field(default=None)

    def solver_input(
        self,
        sizing: Sizing = Sizing(),
        modes: Mapping[str, Mode] | None = None,
        weights: Mapping[str, int] | None = None,
        require_facilitator: bool = True,
    ) -> SolverInput:
        """A `SolverInput` balancing every attribute column (spread unless `modes` says
        otherwise); the `travel_group` column drives the travel term instead."""
        modes, weights = modes or {}, weights or {}
        rules = tuple(
            AttributeRule(a, modes.get(a, Mode.SPREAD), weights.get(a, 1))
            for a in self.attribute_columns
            if a != self.travel_attribute
        )
        return SolverInput(
            people=self.people,
            sizing=sizing,
            together=self.together,
            not_with=self.not_with,
            pins=self.pins,
            require_facilitator=require_facilitator,
            attributes=rules,
            travel_attribute=self.travel_attribute,
        )


#: Column names people write for a rule the solver knows under another name: an unknown
#: column is balanced as an attribute, so a misnamed rule would silently be dropped.
_RULE_ALIASES = {
    "apart": "not_with",
    "avoid": "not_with",
    "not_together": "not_with",
    "separate": "not_with",
    "separate_from": "not_with",
    "nicht_mit": "not_with",
    "with": "together",
    "together_with": "together",
    "friends": "together",
    "buddy": "together",
    "buddies": "together",
    "pin": "pinned_crew",
    "pinned": "pinned_crew",
    "crew": "pinned_crew",
    "facilitates": "facilitator",
    "facilitators": "facilitator",
    "language": "languages",
    "lang": "languages",
}


def _constraint_meant(column: str) -> str | None:
    """The known column a header probably means (an alias, or a typo of a known rule)."""
    if column in KNOWN or not column:
        return None
    key = column.replace(" ", "_").replace("-", "_")
    if key in KNOWN:
        return key
    if key in _RULE_ALIASES:
        return _RULE_ALIASES[key]
    close = difflib.get_close_matches(key, KNOWN, n=1, cutoff=0.8)
    return close[0] if close else None


def _split(cell: str) -> list[str]:
    return [x.strip() for x in cell.split(";") if x.strip()]


def _read(path_or_text: str | Path) -> str:
    if isinstance(path_or_text, Path):
        return _decode(path_or_text.read_bytes())
    if "\n" not in path_or_text and Path(path_or_text).is_file():
        return _decode(Path(path_or_text).read_bytes())
    return path_or_text


def _decode(data: bytes) -> str:
    """UTF-8 (with or without Excel's BOM), else Windows-1252: what Excel on Windows saves as
    "CSV" in western locales. Bytes that are neither are refused, not guessed."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise CsvError(
            "the file is neither UTF-8 nor Windows-1252 text: save it as CSV UTF-8"
        ) from None


def _dialect(text: str) -> str:
    """The separator: a comma, or the semicolon Excel writes where the comma is a decimal
    mark (most of Europe). Decided on the header row, which must name `id`."""
    header = text.split("\n", 1)[0]
    by_comma = [h.strip().lower() for h in header.split(",")]
    by_semicolon = [h.strip().lower() for h in header.split(";")]
    return ";" if "id" not in by_comma and "id" in by_semicolon else ","


def load_people_csv(path_or_text: str | Path) -> CsvPeople:
    """Parse a file path or the CSV text itself; raises CsvError on the first bad cell."""
    text = _read(path_or_text)
    rows = list(csv.reader(io.StringIO(text), delimiter=_dialect(text)))
    if not rows:
        raise CsvError("the file is empty (a header row with at least `id` is required)")
    header = [h.strip().lower() for h in rows[0]]
    if "id" not in header:
        raise CsvError("line 1: missing column 'id'")
    dup = next((h for h in header if header.count(h) > 1), None)
    if dup is not None:
        raise CsvError(f"line 1: column {dup!r} appears twice")
    for column in header:
        meant = _constraint_meant(column)
        if meant is not None:
            raise CsvError(
                f"line 1: column {column!r} is not a column the solver knows; did you mean"
                f" {meant!r}? (as it stands, it would only be balanced, not obeyed)"
            )
    attrs = tuple(h for h in header if h not in KNOWN and h)
    people: list[Person] = []
    requests: list[tuple[int, str, str, list[str]]] = []
    pins: dict[str, int] = {}
    seen: dict[str, int] = {}
    for line, raw in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in raw):
            continue
        if len(raw) > len(header):
            raise CsvError(f"line {line}: {len(raw)} cells but the header has {len(header)}")
        row = dict(zip(header, (c.strip() for c in raw), strict=False))
        person, pin = _person(row, line, "languages" in header, attrs)
        if person.id in seen:
            raise CsvError(
                f"line {line}, column 'id': {person.id!r} already used on line {seen[person.id]}"
            )
        seen[person.id] = line
        people.append(person)
        if pin is not None:
            pins[person.id] = pin
        for col in ("together", "not_with"):
            requests.append((line, col, person.id, _split(row.get(col, ""))))
    together: list[tuple[str, ...]] = []
    not_with: list[tuple[str, str]] = []
    for line, col, pid, others in requests:
        for other in others:
            if other not in seen:
                raise CsvError(f"line {line}, column {col!r}: unknown id {other!r}")
            if col == "together":
                together.append((pid, other))
            else:
                not_with.append((pid, other))
    travel = "travel_group" if "travel_group" in attrs else None
    return CsvPeople(tuple(people), tuple(together), tuple(not_with), pins, attrs, travel)


def _person(
    row: dict[str, str], line: int, has_languages: bool, attrs: tuple[str, ...]
) -> tuple[Person, int | None]:
    pid = row.get("id", "")
    if not pid:
        raise CsvError(f"line {line}, column 'id': empty")
    if has_languages:
        langs = frozenset(_split(row.get("languages", "")))
        if not langs:
            raise CsvError(
                f"line {line}, column 'languages': empty (list at least one, separated by ';')"
            )
    else:
        langs = frozenset({SHARED_LANGUAGE})
    fac = row.get("facilitator", "").lower()
    if fac not in TRUE | FALSE:
        raise CsvError(f"line {line}, column 'facilitator': expected yes or no, got {fac!r}")
    pin_cell = row.get("pinned_crew", "")
    pin: int | None = None
    if pin_cell:
        if not pin_cell.isdigit() or int(pin_cell) < 1:
            raise CsvError(
                f"line {line}, column 'pinned_crew': expected a crew number from 1, "
                f"got {pin_cell!r}"
            )
        pin = int(pin_cell) - 1
    person = Person(
        id=pid,
        name=row.get("name", "") or pid,
        languages=langs,
        facilitator=fac in TRUE,
        attributes={a: row.get(a, "") for a in attrs if row.get(a, "")},
    )
    return person, pin

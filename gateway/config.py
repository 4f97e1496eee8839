"""The service config (`gateway.toml`) and loading every gathering file, with clear errors.

Secrets never have to be in the TOML: each secret setting has `*_env` (the name of an
environment variable) and `*_file` (a path, e.g. a Docker/systemd credential) forms.
Gatherings are either inline tables `[gatherings.<slug>]` or separate files listed in
`gathering_files` (globs relative to the config file); both are validated by the same model.
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.config import GatheringConfig, Question
from gateway.model import Identity

#: Crew overrides files (`gateway crews`) live beside gathering files and are not gatherings.
CREW_OVERRIDES_SUFFIX = ".crews.toml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret(Strict):
    """A secret given as an environment variable name or a file path (or, for tests, inline)."""

    env: str | None = None
    file: Path | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Secret:
        if sum(x is not None for x in (self.env, self.file, self.value)) != 1:
            raise ValueError("give exactly one of env, file or value")
        return self

    def get(self) -> str:
        if self.value is not None:
            return self.value
        if self.env is not None:
            found = os.environ.get(self.env)
            if found is None:
                raise ConfigError([f"environment variable {self.env} is not set"])
            return found
        assert self.file is not None
        try:
            return self.file.read_text().strip()
        except OSError as exc:
            raise ConfigError([f"cannot read secret file {self.file}: {exc.strerror}"]) from exc


class StoreSettings(Strict):
    path: Path = Path("var/gateway.sqlite3")
    durability: Literal["full", "normal"] = "full"


class OutboxSettings(Strict):
    """How long a message that keeps failing (an SMTP or homeserver outage) is retried."""

    give_up_after_hours: Annotated[float, Field(gt=0, le=24 * 60)] = 72

    @property
    def give_up_after(self) -> timedelta:
        return timedelta(hours=self.give_up_after_hours)


class Organiser(Strict):
    name: str
    email: str | None = None
    matrix: str | None = None

    def identities(self) -> list[Identity]:
        out = []
        if self.email:
            out.append(Identity.email(self.email, self.name))
        if self.matrix:
            out.append(Identity.matrix(self.matrix, self.name))
        return out


class MatrixSettings(Strict):
    homeserver: str
    user_id: str
    access_token: Secret | None = None
    password: Secret | None = None
    device_id: str | None = None
    device_name: str = "Gathering Gateway"
    #: Where the device id, and with E2EE the crypto store, are kept.
    store_path: Path = Path("var/matrix")
    e2ee: bool = False
    #: Seconds an encrypted message waits for its room key before its sender is asked to
    #: send it again (keys often arrive just after the message).
    key_wait: Annotated[float, Field(gt=0)] = 60
    organisers_room: str | None = None

    @model_validator(mode="after")
    def _credentials(self) -> MatrixSettings:
        if self.access_token is None and self.password is None:
            raise ValueError("give access_token or password (as env or file)")
        return self


class SmtpSettings(Strict):
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["tls", "starttls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    timeout: Annotated[float, Field(gt=0)] = 30
    max_connections: Annotated[int, Field(ge=1, le=32)] = 2
    #: Messages per second at most (None: as fast as the connections go).
    rate_per_second: Annotated[float, Field(gt=0)] | None = None


class ImapSettings(Strict):
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str
    password: Secret
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    #: Where a mail goes that the engine failed on `max_failures` times in a row (it is
    #: recorded as rejected and the organisers are told), so one mail cannot stop the rest.
    shunt_folder: str = "Gateway-Failed"
    max_failures: Annotated[int, Field(ge=1, le=100)] = 3
    idle: bool = True
    poll_seconds: Annotated[float, Field(gt=0)] = 60
    #: Larger mail is not fetched: its sender is told it was too large (its headers are read
    #: for that) and it is moved to `processed_folder` unread.
    max_message_bytes: Annotated[int, Field(ge=65536)] = 32 * 1024 * 1024


class ListenerSettings(Strict):
    """An SMTP or LMTP listener for self-hosters who point their MX or Postfix at the gateway."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8024
    protocol: Literal["lmtp", "smtp"] = "lmtp"
    #: A mail the engine failed on this many times (the sending MTA retries after each 451)
    #: is accepted, kept in the store's quarantine and reported to the organisers.
    max_failures: Annotated[int, Field(ge=1, le=100)] = 3
    #: Larger mail is refused with 552 (advertised as SIZE, so MTAs usually do not even send
    #: it); the sender's server then tells them. Replies need far less: attachments are not read.
    max_message_bytes: Annotated[int, Field(ge=65536)] = 32 * 1024 * 1024
    #: A mail over `large_message_bytes` (by the SIZE its sender declares; a sender that
    #: declares none counts as large) is received only while fewer than
    #: `max_concurrent_large` others are: each costs several times its size in memory while
    #: it is read and parsed. Others are answered 451, and their MTA retries later.
    max_concurrent_large: Annotated[int, Field(ge=1, le=64)] = 2
    large_message_bytes: Annotated[int, Field(ge=65536)] = 1024 * 1024


class DkimSettings(Strict):
    selector: str
    domain: str
    private_key: Secret


class EmailSettings(Strict):
    #: The gateway's address; replies come to `local+token@domain` plus addresses of it.
    address: str
    display_name: str = "Gathering Gateway"
    token_secret: Secret
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    imap: ImapSettings | None = None
    listener: ListenerSettings | None = None
    dkim: DkimSettings | None = None
    #: The authserv-id your mail server writes in Authentication-Results (e.g. its host
    #: name); when set, only that server's DMARC/DKIM verdict is believed.
    authserv_id: str | None = None
    #: Mails a day at most to an address that has not proven itself (by replying through one
    #: of our messages, or entering a code sent to it): anyone can write any address in a
    #: From or a `link email`, and must not be able to make the gateway mail a third party
    #: without end. More are dropped, with a log line and an audit note.
    unproven_daily_limit: Annotated[int, Field(ge=1, le=1000)] = 5


class ServiceConfig(Strict):
    store: StoreSettings = Field(default_factory=StoreSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    templates: Path | None = None
    organisers: list[Organiser] = Field(default_factory=list)
    matrix: MatrixSettings | None = None
    email: EmailSettings | None = None
    gathering_files: list[str] = Field(default_factory=list)
    gatherings: dict[str, GatheringConfig] = Field(default_factory=dict)

    def organiser_identities(self) -> list[Identity]:
        return [i for o in self.organisers for i in o.identities()]


class ConfigError(Exception):
    """Every problem found in the config, each naming the file and key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    service: ServiceConfig
    gatherings: dict[str, GatheringConfig]
    #: The file each gathering came from (for reload and messages).
    sources: dict[str, Path]


def load_config(path: str | Path) -> LoadedConfig:
    """Load and validate the service config and all gathering files; raise ConfigError."""
    path = Path(path)
    raw = _read_toml(path)
    problems: list[str] = []
    inline = raw.get("gatherings", {})
    if isinstance(inline, dict):
        for slug, table in inline.items():
            if isinstance(table, dict):
                table.setdefault("slug", slug)
    service: ServiceConfig | None = None
    try:
        service = ServiceConfig.model_validate(raw)
    except ValidationError as exc:
        # Keep going: the organiser wants every problem of every file in one run.
        problems.extend(format_errors(exc, path, data=raw))
    gatherings = dict(service.gatherings) if service else {}
    sources = {slug: path for slug in gatherings}
    patterns = raw.get("gathering_files", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        patterns = []
    for file in _gathering_paths(path, patterns, problems):
        try:
            table = _read_toml(file)
            gathering = GatheringConfig.model_validate(table)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        except ValidationError as exc:
            # Name keys as they would be inline, so messages read the same for both layouts.
            problems.extend(
                format_errors(
                    exc, file, prefix=("gatherings", str(table.get("slug", file.stem))), data=table
                )
            )
            continue
        if gathering.slug in gatherings:
            problems.append(
                f"{file}: slug {gathering.slug!r} is also defined in {sources[gathering.slug]}"
            )
            continue
        gatherings[gathering.slug] = gathering
        sources[gathering.slug] = file
    problems.extend(_cross_checks(gatherings, sources))
    if problems or service is None:
        raise ConfigError(problems)
    return LoadedConfig(path=path, service=service, gatherings=gatherings, sources=sources)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        # A database or another binary file passed as --config, or a file in a legacy encoding.
        raise ConfigError([f"{path}: not a TOML text file (TOML is UTF-8 text)"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a folder, not a TOML file"]) from None


def _gathering_paths(config: Path, patterns: Iterable[str], problems: list[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(config.parent / pattern)))
        if not matches:
            problems.append(f"{config}: gathering_files: {pattern!r} matches no file")
        # A glob such as "*.toml" beside the service config must not read the config itself,
        # nor the organisers' crew overrides (`<slug>.crews.toml`) kept beside a gathering.
        found.extend(
            Path(m)
            for m in matches
            if Path(m).resolve() != config.resolve() and not m.endswith(CREW_OVERRIDES_SUFFIX)
        )
    return found


#: Languages the message templates exist in.
LANGUAGES = tuple(
    sorted(
        p.name for p in (Path(__file__).resolve().parents[1] / "templates").iterdir() if p.is_dir()
    )
)


def _as_naive_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def secret_problems(config: LoadedConfig) -> list[str]:
    """Every secret the config names that cannot be read now (unset variable, missing file),
    with its key: what `gateway check` reports and `gateway run` refuses to start without."""
    problems: list[str] = []

    def walk(value: object, key: str) -> None:
        if isinstance(value, Secret):
            try:
                value.get()
            except ConfigError as exc:
                problems.extend(f"{config.path}: {key}: {p}" for p in exc.problems)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{key}.{name}" if key else name)

    walk(config.service, "")
    return problems


def _cross_checks(gatherings: dict[str, GatheringConfig], sources: dict[str, Path]) -> list[str]:
    """Checks that span sections: crew criteria must name registration questions, dates and
    answers must fit together, and messages must exist in the gathering's language."""
    problems = []
    for slug, g in gatherings.items():
        where = f"{sources[slug]}: gatherings.{slug}"
        if g.language not in LANGUAGES:
            problems.append(
                f"{where}.language: no messages in {g.language!r} (have: {', '.join(LANGUAGES)})"
            )
        closes = g.registration.closes_at
        if closes is not None and _as_naive_date(closes) > _as_naive_date(g.ends):
            problems.append(f"{where}.registration.closes_at: after the gathering ends ({g.ends})")
        if g.travel is not None:
            problems += _venue_town(where, g)
        sections = {"registration": g.registration.questions}
        if g.debrief is not None:
            sections["debrief"] = g.debrief.questions
        for section, questions in sections.items():
            problems += _show_if_options(f"{where}.{section}", questions)
        if g.crews is not None and g.crews.one_facilitator_per_crew:
            if g.crews.facilitator_question is None:
                problems.append(
                    f"{where}.crews.one_facilitator_per_crew: needs crews.facilitator_question"
                )
        if g.crews is None:
            continue
        ids = {q.id for q in g.registration.questions}
        named = {
            "language_question": g.crews.language_question,
            "together_question": g.crews.together_question,
            "apart_question": g.crews.apart_question,
            "facilitator_question": g.crews.facilitator_question,
            "consent_question": g.crews.consent_question,
        }
        for i, c in enumerate(g.crews.balance):
            named[f"balance[{i}].question"] = c.question
        for key, qid in named.items():
            if qid is not None and qid not in ids:
                problems.append(
                    f"{sources[slug]}: gatherings.{slug}.crews.{key}: no registration "
                    f"question {qid!r} (known: {', '.join(sorted(ids)) or 'none'})"
                )
    return problems


def _venue_town(where: str, g: GatheringConfig) -> list[str]:
    """The travel venue must be a town the offline lookup knows, and only one."""
    from flows.travel.places import Ambiguous, Found, NotFound, find_town, label

    assert g.travel is not None
    found = find_town(g.travel.venue_town, countries=g.travel.countries)
    if isinstance(found, Found):
        return []
    if isinstance(found, Ambiguous):
        options = "; ".join(label(t) for t in found.candidates)
        return [f"{where}.travel.venue_town: which one? ({options}); add the country"]
    assert isinstance(found, NotFound)
    close = ", ".join(label(t) for t in found.suggestions) or "none close"
    return [f"{where}.travel.venue_town: no town {g.travel.venue_town!r} (close: {close})"]


def _show_if_options(where: str, questions: list[Question]) -> list[str]:
    """A `show_if` value must be one of the options of the question it looks at."""
    problems = []
    by_id = {q.id: q for q in questions}
    for i, q in enumerate(questions):
        cond = q.show_if
        target = by_id.get(cond.question) if cond else None
        if cond is None or target is None or not target.options:
            continue
        wanted = [cond.equals] if cond.equals is not None else list(cond.any_of or [])
        for value in wanted:
            if isinstance(value, str) and value not in target.options:
                problems.append(
                    f"{where}.questions[{i}] (id {q.id!r}).show_if: {value!r}"
                    f" is not an option of {target.id!r} ({', '.join(target.options)})"
                )
    return problems


def format_errors(
    exc: ValidationError, file: Path, prefix: tuple[str, ...] = (), data: object = None
) -> list[str]:
    """pydantic errors as `file: key.path[2] (id 'diet').type: message (allowed: …)` lines;
    with the validated `data`, a list item that has an id is named by it too."""
    lines = []
    for error in exc.errors():
        head = _key_path(prefix) if prefix else ""
        loc = head + _key_path(error["loc"], data, continued=bool(prefix))
        message = error["msg"]
        ctx = error.get("ctx") or {}
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif error["type"] == "enum" and "expected" in ctx:
            message = f"not an allowed value (allowed: {ctx['expected']})"
        elif error["type"] == "missing":
            message = "required key is missing"
        value = error.get("input")
        shown = (
            f" (got {value!r})"
            if error["type"] not in ("missing", "extra_forbidden") and _small(value)
            else ""
        )
        lines.append(f"{file}: {loc}: {message}{shown}")
    return lines


def _key_path(loc: tuple[int | str, ...], data: object = None, *, continued: bool = False) -> str:
    out = ""
    node = data
    for part in loc:
        node = _child(node, part)
        if isinstance(part, int):
            named = node.get("id") if isinstance(node, dict) else None
            out += f"[{part}]" + (f" (id {named!r})" if isinstance(named, str) else "")
        else:
            out += ("." if out or continued else "") + str(part)
    return out or ("" if continued else "(top level)")


def _child(node: object, part: int | str) -> object:
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def _small(value: object) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) < 60


def crew_overrides_path(config: LoadedConfig, slug: str) -> Path:
    """The organisers' crew overrides file of a gathering: `<slug>.crews.toml` beside its
    gathering file. The CLI and the organisers' room both take it from here."""
    return config.sources[slug].parent / f"{slug}{CREW_OVERRIDES_SUFFIX}"


def is_gathering_file(path: str | Path) -> bool:
    """A gathering file (top-level `slug`) rather than a service config."""
    try:
        raw = _read_toml(Path(path))
    except ConfigError:
        return False
    return "slug" in raw and "gathering_files" not in raw and "gatherings" not in raw


def load_gathering_file(path: str | Path) -> GatheringConfig:
    """Validate one gathering file on its own (`gateway check gatherings/camp.toml`)."""
    path = Path(path)
    table = _read_toml(path)
    try:
        gathering = GatheringConfig.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, path, data=table)) from None
    if problems := _cross_checks({gathering.slug: gathering}, {gathering.slug: path}):
        raise ConfigError(problems)
    return gathering

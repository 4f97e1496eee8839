"""What a flow is: a pure step function from (state, message, now) to an Outcome.

Flows never do I/O, never sleep and never start tasks (the h11 idea: the protocol is data and
pure functions; sockets live elsewhere). The engine loads the state, calls `step`, and saves
everything the Outcome asks for in one transaction. Time passes for a flow only through TICK
messages of the timers it set, which is what lets a crashed service catch up.

Two kinds of runs exist for each (gathering, flow): one per person, and one for the gathering
itself (person 0) that holds what is shared: seat counts, the waiting list, crew proposals.
A gathering-level step sees the states of the runs of the flows it declares in `reads`, so
group-level flows (matching many people at once) need nothing more from the engine.

Each flow's persisted state is a pydantic model (`FlowState`), one class for a person's run
(`state_model`) and one for the gathering-level run (`shared_model`), so a reader sees the
state's shape in one place and a row that does not fit fails when it is loaded, not deep in
a step. The engine validates the stored JSON into the model (a run that does not exist yet
gets the model's defaults), gives the step its own copies to change, and stores what the
step returns with `to_stored()` (`model_dump_json`). Other flows' states (`peers`, `shared_of`) stay
plain JSON: a flow never imports another flow's classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Protocol, Self, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer
from typing_extensions import TypeVar

from flows.config import GatheringConfig
from gateway.model import (
    GATHERING_SUBJECT,
    Channel,
    Emit,
    Identity,
    InboundMessage,
    Outgoing,
    PersonId,
    Reply,
    RunJob,
    SetTimer,
)


class FlowState(BaseModel):
    """The base of every flow's persisted state (a person's run or the gathering's).

    Keys this version does not know are kept and written back (`extra="allow"`), not refused
    and not dropped: after a rollback to an older version, runs it touches still carry what
    the newer one wrote, so rolling forward again loses nothing. Known keys are strict
    (`from_stored`): a value of the wrong type fails the load, loudly.
    """

    model_config = ConfigDict(extra="allow")

    @classmethod
    def from_stored(cls, stored: str | bytes) -> Self:
        """The state in a stored row (JSON), checked strictly: "3" is no int, 1 no str; an
        ISO time, an enum's value and a number as an object key are what JSON has for those."""
        return cls.model_validate_json(stored, strict=True)

    def to_stored(self) -> str:
        """The JSON the row keeps: every field, less those `absent` leaves out."""
        return self.model_dump_json()


#: A datetime stored as `isoformat()` ("+00:00", not pydantic's "Z"): the JSON stays what it
#: was when flows wrote these by hand, so older rows and older readers agree.
Moment = Annotated[AwareDatetime, PlainSerializer(lambda at: at.isoformat(), when_used="json")]


def absent(default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A field whose default is not written: the key stays absent from the JSON, as it was
    when flows kept plain dicts (and older readers test for the key, not its value).
    `factory` makes a mutable default ({} or []) per instance."""
    empty = factory() if factory is not None else default
    if factory is not None:
        return Field(default_factory=factory, exclude_if=lambda value: value == empty)
    return Field(default=default, exclude_if=lambda value: value == empty)


StateT = TypeVar("StateT", bound=FlowState, default=FlowState)
SharedT = TypeVar("SharedT", bound=FlowState, default=FlowState)


@dataclass(frozen=True, slots=True)
class PersonInfo:
    """What a flow may know about the person a run is about."""

    id: PersonId
    display_name: str
    language: str
    channel: Channel | None
    #: Channels the person can be reached on ("email", "matrix").
    channels: tuple[Channel, ...] = ()
    #: Whether the person is listed as an organiser of the service.
    organiser: bool = False


@dataclass(frozen=True, slots=True)
class RunView:
    """A read-only snapshot of another run, for gathering-level steps."""

    person: PersonId
    status: str
    state: Mapping[str, Any]
    display_name: str = ""


_UNSET: Any = object()


class StepContext(Generic[StateT, SharedT]):
    """Everything a step may look at. `state` and `shared` are copies: mutate them freely.

    `state` is an instance of the flow's `state_model`, `shared` of its `shared_model`; in a
    gathering-level step (person 0) `state` is a second copy of `shared`, so such steps
    read and return `shared`.

    `shared` may be given as `load_shared`, which makes it on first use: the gathering's
    state (every seat, the waiting list) grows with the gathering, and most of a person's
    steps (an answer, "help") never look at it, so they do not pay for reading it.
    """

    __slots__ = (
        "message",
        "now",
        "gathering",
        "person",
        "state",
        "peers",
        "shared_of",
        "_shared",
        "_load_shared",
    )

    def __init__(
        self,
        message: InboundMessage,
        now: datetime,
        gathering: GatheringConfig,
        person: PersonInfo,
        state: StateT,
        shared: SharedT = _UNSET,
        peers: Mapping[str, Mapping[PersonId, RunView]] | None = None,
        shared_of: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        load_shared: Callable[[], SharedT] | None = None,
    ) -> None:
        if (shared is _UNSET) == (load_shared is None):
            raise TypeError("StepContext needs one of shared and load_shared")
        self.message = message
        self.now = now
        self.gathering = gathering
        self.person = person
        self.state = state
        #: Runs of the flows listed in `Flow.reads`, by flow name then person (gathering
        #: steps only), their states as plain JSON.
        self.peers: Mapping[str, Mapping[PersonId, RunView]] = peers or {}
        #: The gathering-level states of the flows in `Flow.reads` (gathering steps only).
        self.shared_of: Mapping[str, Mapping[str, Any]] = shared_of or {}
        self._shared = shared
        self._load_shared = load_shared

    @property
    def shared(self) -> SharedT:
        """The gathering-level run's state of this flow (its own `state` when person is 0)."""
        if self._shared is _UNSET:
            assert self._load_shared is not None
            self._shared = self._load_shared()
        return self._shared

    @property
    def is_gathering_run(self) -> bool:
        return self.person.id == GATHERING_SUBJECT


@dataclass
class Outcome:
    """What a step decided. `None` for state/shared means unchanged."""

    state: FlowState | None = None
    shared: FlowState | None = None
    #: A short status of the run kept in its own column (counts, exports) e.g. "registered".
    status: str | None = None
    send: list[Outgoing] = field(default_factory=list)
    timers: list[SetTimer] = field(default_factory=list)
    #: Names of timers of this run (same person) to cancel.
    cancel_timers: list[str] = field(default_factory=list)
    emit: list[Emit] = field(default_factory=list)
    #: CPU-heavy work to run outside the transaction; the result comes back as JOB_DONE.
    jobs: list[RunJob] = field(default_factory=list)
    #: The answer to the COMMAND's caller (an organiser): not kept in the state.
    reply: Reply | None = None
    #: Verified identities to add to the run's person (identity linking).
    link: list[Identity] = field(default_factory=list)
    #: Change the person's preferred channel and/or language.
    preferred_channel: Channel | None = None
    language: str | None = None
    #: True when the step did not understand the message at all (audit only).
    ignored: bool = False


#: The COMMAND a flow's gathering-level run gets when an organiser edited the gathering's
#: file (only flows with `config_aware = True`): it may act on the new config now,
#: e.g. offer the seats a larger capacity made free, instead of at the next message.
CONFIG_CHANGED = "config_changed"


#: What `Flow.schedule` returns: the gathering-level timers the flow's config implies, by
#: name; None removes a timer of that name (a reminder the organisers switched off).
Schedule = Mapping[str, datetime | None]


class Flow(Protocol):
    """A workflow module. One instance serves every gathering; config comes in the context.

    Its persisted states are models: `state_model` for a person's run, `shared_model` for
    the gathering-level run (`FlowState` itself when a run keeps nothing). The engine refuses
    a flow without them when it is built (`check_models`).
    """

    name: ClassVar[str]
    #: Flows whose runs a gathering-level step of this flow gets in `StepContext.peers`.
    reads: ClassVar[tuple[str, ...]]

    # Read-only here (a flow declares them as ClassVars of its own classes, e.g.
    # `state_model: ClassVar[type[TravelRun]] = TravelRun`), so a subclass fits.
    @property
    def state_model(self) -> type[FlowState]: ...

    @property
    def shared_model(self) -> type[FlowState]: ...

    def step(self, ctx: StepContext[Any, Any]) -> Outcome: ...

    def wants(self, message: InboundMessage, status: str) -> bool:
        """Whether a message that names no conversation is for this person's run of this flow.

        The engine asks the person's runs from the most recently active one down, so a reply to
        "change diet" reaches registration even after a crew introduction was the last message.
        """
        ...


def check_models(name: str, flow: object) -> None:
    """Refuse a flow that does not declare both state models (it could keep no state)."""
    for attribute in ("state_model", "shared_model"):
        model = getattr(flow, attribute, None)
        if not (isinstance(model, type) and issubclass(model, FlowState)):
            raise TypeError(
                f"flow {name!r} ({type(flow).__name__}) declares no {attribute}: every flow "
                "names the FlowState classes of its runs as `state_model` (a person's run) "
                "and `shared_model` (the gathering's run); FlowState itself keeps nothing"
            )


def state_model(flow: Flow, gathering_run: bool) -> type[FlowState]:
    """The model of a run of `flow`: the gathering's (person 0) or a person's."""
    return flow.shared_model if gathering_run else flow.state_model


#: A job's work: JSON-like data in, JSON-like data out, no I/O (it may run in another process).
JobFunction = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@runtime_checkable
class HasJobs(Protocol):
    """A flow whose steps ask for jobs (`Outcome.jobs`), by name. Module-level functions, so
    that a worker process can run them."""

    jobs: ClassVar[Mapping[str, JobFunction]]


@runtime_checkable
class Scheduling(Protocol):
    """A flow whose config sets timers of its own (debrief: prompts after the gathering ends).

    The engine calls `schedule` for every gathering on start and after every reload, with
    the gathering-level run's state (an instance of the flow's `shared_model`), and makes
    the timers say exactly that: calling it twice changes nothing. A timer that already
    fired is returned again only if the state says its work is not done, so a restart never
    repeats it.
    """

    def schedule(self, gathering: GatheringConfig, state: Any, now: datetime) -> Schedule: ...

"""Wiring and lifecycle: store, engine, outbox worker, timers, transports, config reload.

Everything runs in one asyncio.TaskGroup; a failing part stops the service loudly rather than
leaving it half alive — except a database that another writer holds locked (a backup, a
command beside the service), which every loop waits out (`keep_running`).
Gathering files are re-read on SIGHUP and when their modification time changes, so
organisers can edit questions without a restart.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.base import Flow
from flows.config import GatheringConfig
from flows.travel.places import warm_up
from gateway.app.registry import default_flows
from gateway.config import ConfigError, LoadedConfig, load_config
from gateway.core.engine import Engine
from gateway.core.jobs import JobRunner
from gateway.core.outbox import OutboxWorker
from gateway.core.render import DEFAULT_TEMPLATES, Renderer
from gateway.core.timers import TimerLoop
from gateway.model import Channel
from gateway.ports import Transport
from gateway.store import Store, open_store
from gateway.store.migrations import Migration

log = logging.getLogger(__name__)


#: A transport's inbound side: runs until the event is set, feeding the engine.
Receiver = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class Channels:
    """The transports the config asks for: senders, inbound loops, and what to close."""

    senders: dict[Channel, Transport] = field(default_factory=dict)
    receivers: list[Receiver] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Called after a config reload (e.g. to learn the conversations of new gatherings).
    on_reload: list[Callable[[LoadedConfig], None]] = field(default_factory=list)


#: Builds the channels for a config; `wake` tells the outbox worker new rows are due.
ChannelFactory = Callable[[LoadedConfig, Engine, Callable[[], None]], Channels]


async def build_engine(
    config: LoadedConfig,
    *,
    migrations: list[Migration] | None = None,
    flows: Mapping[str, Flow] | None = None,
    token_maker: Callable[..., str] | None = None,
    create: bool = True,
    **engine_args: Any,
) -> Engine:
    """Open the store and make the engine the config describes (used by `run` and commands).

    Commands other than `run` pass `create=False`: they read or change a database that the
    service made, and must not start a new, empty one at a mistyped path."""
    # A relative store path is relative to the config file, not to wherever the command ran.
    store: Store = await open_store(
        config.path.parent / config.service.store.path,
        durability=config.service.store.durability,
        migrations=migrations or [],
        create=create,
    )
    renderer = Renderer(config.service.templates or DEFAULT_TEMPLATES)
    email = config.service.email
    engine_args.setdefault("unproven_daily_limit", email.unproven_daily_limit if email else None)
    return Engine(
        store,
        flows if flows is not None else default_flows(),
        config.gatherings,
        renderer=renderer,
        organisers=config.service.organiser_identities(),
        token_maker=token_maker,
        **engine_args,
    )


class Service:
    """The running gateway."""

    def __init__(self, config: LoadedConfig, engine: Engine, channels: ChannelFactory) -> None:
        self.config = config
        self.engine = engine
        self.stop = asyncio.Event()
        self.channels = channels(config, engine, self.wake)
        # One clock, the engine's, for every part (tests set it; the service runs on now).
        self.outbox = OutboxWorker(
            engine.store,
            self.channels.senders,
            alert=engine.enqueue_alert_in,
            give_up_after=config.service.outbox.give_up_after,
            clock=engine.clock,
        )
        self.timers = TimerLoop(engine, clock=engine.clock)
        self.jobs = JobRunner(engine, clock=engine.clock)
        self._mtimes = _mtimes(config)
        #: Seconds between looks at the config files' modification times.
        self.watch_interval = 2.0
        self._reloads: set[asyncio.Task[object]] = set()

    def wake(self) -> None:
        """Called after inbound messages commit: outbox rows and timers may be due now."""
        self.outbox.wake()
        self.timers.wake()
        self.jobs.wake()

    def reload(self) -> None:
        """Re-read the config; a broken edit is logged once and the running config kept."""
        try:
            fresh = load_config(self.config.path)
        except ConfigError as exc:
            log.error("config not reloaded, keeping the running one:\n%s", exc)
            # Remember the broken files' times: the next look must not log it again.
            self._mtimes = _mtimes(self.config)
            return
        before = self.engine.gatherings
        self.config = fresh
        self.engine.reload(fresh.gatherings)
        # Flows act on the new config now (a larger capacity offers seats), not at the next
        # message; the task is kept so that it finishes, and waited for on stop.
        task = asyncio.get_running_loop().create_task(self._config_changed(before))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        task.add_done_callback(lambda _: self.wake())
        for hook in self.channels.on_reload:
            hook(fresh)
        self._mtimes = _mtimes(fresh)
        log.info("config reloaded: %s", ", ".join(fresh.gatherings) or "no gatherings")

    async def _config_changed(self, before: Mapping[str, GatheringConfig]) -> None:
        await self.engine.config_changed(before)
        await self.engine.schedule()

    async def _watch(self) -> None:
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=self.watch_interval)
            except TimeoutError:
                if _mtimes(self.config) != self._mtimes:
                    self.reload()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        handled = []
        for sig, action in (
            (signal.SIGHUP, self.reload),
            (signal.SIGTERM, self.stop.set),
            (signal.SIGINT, self.stop.set),
        ):
            try:
                loop.add_signal_handler(sig, action)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        log.info(
            "gateway running: %s; channels: %s",
            ", ".join(self.engine.gatherings),
            ", ".join(c.value for c in self.channels.senders) or "none",
        )
        # Timers the gathering files imply (debrief prompts) are set before anything runs.
        await self.engine.schedule()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(keep_running("outbox", self.outbox.run, self.stop))
                group.create_task(
                    keep_running(
                        "timers",
                        lambda stop: self.timers.run(stop, on_fired=self.wake),
                        self.stop,
                    )
                )
                group.create_task(
                    keep_running(
                        "jobs", lambda stop: self.jobs.run(stop, on_done=self.wake), self.stop
                    )
                )
                group.create_task(self._watch())
                if any(g.travel for g in self.engine.gatherings.values()):
                    # The town list takes seconds to load: not inside the first travel step.
                    group.create_task(asyncio.to_thread(warm_up))
                for receiver in self.channels.receivers:
                    group.create_task(keep_running("receiver", receiver, self.stop))
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            if self._reloads:
                await asyncio.gather(*self._reloads, return_exceptions=True)
            for close in self.channels.closers:
                await close()
            await self.engine.store.close()


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked"/"busy": another writer held the lock past busy_timeout."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


async def keep_running(
    name: str, loop: Receiver, stop: asyncio.Event, *, first_wait: float = 1.0
) -> None:
    """Run `loop(stop)`; when the database stays locked, wait and run it again.

    A loop resumes from what is committed (cursors, outbox rows, timers), so starting it
    again loses nothing; any other error still stops the service.
    """
    wait = first_wait
    while not stop.is_set():
        try:
            await loop(stop)
            return
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            log.warning("%s: %s; trying again in %.0f s", name, exc, wait)
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
        except TimeoutError:
            wait = min(wait * 2, 30.0)


def _mtimes(config: LoadedConfig) -> dict[Path, int]:
    """Modification times of the config and of every file its globs match now, so a new
    gathering file is noticed as well as an edited one."""
    paths = {config.path, *config.sources.values()}
    for pattern in config.service.gathering_files:
        paths.update(Path(p) for p in glob.glob(str(config.path.parent / pattern)))
    return {p: p.stat().st_mtime_ns for p in paths if p.exists()}

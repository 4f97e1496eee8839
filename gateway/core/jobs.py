"""The job runner: CPU-heavy work a step asked for (`Outcome.jobs`), run beside the engine.

A step must stay quick (it runs inside a transaction that other messages wait for), so
matching and solving are jobs: rows in the `jobs` table, run here in a worker process (one
at a time: they are CPU-bound and the machine has few cores), their result fed back to the
run that asked as a JOB_DONE COMMAND. The row is marked done in the transaction that applies
the result, so a crash at any moment either leaves the job pending (it runs again: job
functions are deterministic) or finds it done. A job that keeps killing its worker is given
up after MAX_ATTEMPTS and reported to its run as an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any

from flows.base import HasJobs, JobFunction
from gateway.core.engine import Engine, Handled
from gateway.core.wakeup import Wakeup
from gateway.model import JOB_DONE, Caller, Channel, InboundKind, InboundMessage, PersonId, Target

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def worker_pool() -> ProcessPoolExecutor:
    """One worker process, started fresh ("spawn"): the service's threads are not copied."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _run(function: JobFunction, payload: Mapping[str, Any]) -> dict[str, Any]:
    """In the worker: the job's result, or its error, as JSON-safe data."""
    try:
        return {"result": json.loads(json.dumps(function(payload)))}
    except Exception as exc:  # a job's bug becomes its run's problem, not the runner's
        return {"error": f"{type(exc).__name__}: {exc}"}


class JobRunner:
    def __init__(
        self,
        engine: Engine,
        *,
        executor: Callable[[], Executor] = worker_pool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._make_executor = executor
        self._executor: Executor | None = None
        self._wake = Wakeup()

    def wake(self) -> None:
        self._wake.set()

    def _function(self, flow: str, name: str) -> JobFunction | None:
        implementation = self.engine.flows.get(flow)
        if not isinstance(implementation, HasJobs):
            return None
        return implementation.jobs.get(name)

    async def run_pending(self) -> list[Handled]:
        """Run every pending job once, oldest first; return what became of their results
        (`Handled.replies` holds the answers to a terminal's command)."""
        async with self.engine.store.read() as tx:
            rows = await tx.all(
                "SELECT id, gathering, flow, person_id, name, payload, attempts, caller FROM jobs"
                " WHERE status = 'pending' ORDER BY id"
            )
        return [await self._run_one(row) for row in rows]

    async def _run_one(self, row: Any) -> Handled:
        function = self._function(row["flow"], row["name"])
        payload = json.loads(row["payload"])
        if function is None:
            outcome: dict[str, Any] = {"error": f"no job {row['name']!r} in {row['flow']}"}
        elif row["attempts"] >= MAX_ATTEMPTS:
            outcome = {"error": f"gave up after {MAX_ATTEMPTS} attempts (the worker died)"}
        else:
            async with self.engine.store.transaction() as tx:
                await tx.execute(
                    "UPDATE jobs SET attempts = attempts + 1 WHERE id = ?", (row["id"],)
                )
            outcome = await self._execute(function, payload)
        log.info(
            "job %s %s/%s finished: %s",
            row["id"],
            row["flow"],
            row["name"],
            "error" if "error" in outcome else "ok",
        )
        caller = json.loads(row["caller"]) if row["caller"] else None
        return await self.engine.handle(
            InboundMessage(
                channel=Channel.INTERNAL,
                external_id=f"job:{row['id']}",
                kind=InboundKind.COMMAND,
                received_at=self.clock(),
                text=JOB_DONE,
                payload={"job": row["name"], **outcome},
                target=Target(row["gathering"], row["flow"], PersonId(row["person_id"])),
                meta={"job_id": row["id"]},
                caller=Caller(Channel(caller["channel"]), caller["address"]) if caller else None,
            )
        )

    async def _execute(self, function: JobFunction, payload: Mapping[str, Any]) -> dict[str, Any]:
        if self._executor is None:
            self._executor = self._make_executor()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, _run, function, payload)
        except BrokenProcessPool:
            # The worker died (out of memory, killed): a fresh one for the next try.
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def close(self) -> None:
        """Stop the worker (a job in progress is abandoned; it runs again next time)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def run(self, stop: asyncio.Event, on_done: Callable[[], None] | None = None) -> None:
        try:
            while not stop.is_set():
                self._wake.clear()
                if await self.run_pending():
                    if on_done:
                        on_done()
                    continue
                await self._wake.sleep(stop, 30.0)
        finally:
            self.close()

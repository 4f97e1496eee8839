"""Group commit: messages that arrive while a transaction is being written share the next one.

Each message is still processed on its own (dedupe, route, step, persist) and its effects are
all-or-nothing, but a burst — two thousand people answering at once, a Matrix sync batch,
many LMTP deliveries — pays for one COMMIT (one fsync with `synchronous=FULL`) per group
instead of per message. Callers wait until the transaction holding their message has
committed, so "handled" still means "durable". If a group fails, its jobs are retried one by
one so a poison message fails alone; a job that still fails (one Matrix sync batch) is run
once more with a savepoint per message, and a message that raises again is handed to
`on_failure` (the engine records it failed and tells the organisers) in the same transaction
as its batch-mates and the cursor — Mailman's runner shunts the bad item, not the queue.
A locked database is not the message's fault: it fails the job, to be tried again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.model import InboundMessage
from gateway.ports import EngineStopped
from gateway.store.db import Store, Tx

R = TypeVar("R")

Process = Callable[[Tx, InboundMessage], Awaitable[R]]
SaveCursor = Callable[[Tx, str, str], Awaitable[None]]
OnFailure = Callable[[Tx, InboundMessage, Exception], Awaitable[R]]


@dataclass
class _Job(Generic[R]):
    messages: Sequence[InboundMessage]
    cursor: tuple[str, str] | None
    future: asyncio.Future[list[R]]


class GroupCommitter(Generic[R]):
    def __init__(
        self,
        store: Store,
        process: Process[R],
        save_cursor: SaveCursor,
        *,
        max_messages: int = 200,
        on_failure: OnFailure[R] | None = None,
    ) -> None:
        self.store = store
        self.process = process
        self.save_cursor = save_cursor
        self.on_failure = on_failure
        self.max_messages = max_messages
        self._queue: list[_Job[R]] = []
        self._leading = False

    async def submit(
        self, messages: Sequence[InboundMessage], cursor: tuple[str, str] | None
    ) -> list[R]:
        """Process `messages` (and save `cursor`) atomically; return when committed."""
        job: _Job[R] = _Job(messages, cursor, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        if not self._leading:
            # The first caller leads: it commits groups until nobody is waiting.
            self._leading = True
            group: list[_Job[R]] = []
            try:
                while self._queue:
                    group = self._take()
                    await self._commit(group)
            except BaseException:
                for waiting in (*group, *self._queue):
                    if not waiting.future.done():
                        waiting.future.set_exception(EngineStopped())
                self._queue.clear()
                raise
            finally:
                self._leading = False
        return await job.future

    def _take(self) -> list[_Job[R]]:
        group: list[_Job[R]] = []
        count = 0
        while self._queue:
            if group and count + len(self._queue[0].messages) > self.max_messages:
                break
            job = self._queue.pop(0)
            group.append(job)
            count += len(job.messages)
        return group

    async def _commit(self, group: list[_Job[R]]) -> None:
        try:
            async with self.store.transaction() as tx:
                results = [await self._run(tx, job) for job in group]
        except Exception as exc:
            if len(group) == 1 and (self.on_failure is None or _transient(exc)):
                if not group[0].future.done():
                    group[0].future.set_exception(exc)
                return
            if len(group) == 1:
                await self._commit_shunting(group[0])
                return
            for job in group:  # isolate the job that fails
                await self._commit([job])
            return
        for job, result in zip(group, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    async def _commit_shunting(self, job: _Job[R]) -> None:
        """The slow path for a failing job: each message in a savepoint; one that raises is
        rolled back and handed to `on_failure`, the rest and the cursor commit."""
        assert self.on_failure is not None
        try:
            async with self.store.transaction() as tx:
                results: list[R] = []
                for message in job.messages:
                    await tx.execute("SAVEPOINT message")
                    try:
                        result = await self.process(tx, message)
                        await tx.flush()  # a deferred write that fails is this message's fault
                        results.append(result)
                    except Exception as exc:
                        if _transient(exc):
                            raise
                        tx.discard_deferred()  # rolled back anyway: never run them
                        await tx.execute("ROLLBACK TO message")
                        results.append(await self.on_failure(tx, message, exc))
                    await tx.execute("RELEASE message")
                if job.cursor is not None:
                    await self.save_cursor(tx, *job.cursor)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(results)

    async def _run(self, tx: Tx, job: _Job[R]) -> list[R]:
        results = [await self.process(tx, message) for message in job.messages]
        if job.cursor is not None:
            await self.save_cursor(tx, *job.cursor)
        return results


def _transient(exc: BaseException) -> bool:
    """A busy or locked database (or a full disk): trying again later can help."""
    return isinstance(exc, sqlite3.OperationalError)

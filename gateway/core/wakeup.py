"""Sleeping until the next due row, unless someone says there is work now."""

from __future__ import annotations

import asyncio


class Wakeup:
    """A loop's alarm clock: `set()` by whoever committed work; `sleep()` by the loop.

    The loop must `clear()` before it looks for due work and sleep only after looking, so a
    `set()` that happens in between is never lost.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Return after `seconds`, or as soon as woken or stopped."""
        waiters = [asyncio.create_task(self._event.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()

"""Organisers' crews commands in tests: through the router, then the job runner's turn
(in threads: the worker process would only make tests slower)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gateway.core.engine import Engine
from gateway.core.jobs import JobRunner
from gateway.ops.router import Router


@dataclass(frozen=True)
class Crews:
    """The terminal's answer to a `crews …` line and the replies of the jobs it asked for."""

    answer: str
    replies: list[str]
    refused: bool

    @property
    def text(self) -> str:
        return "\n".join([self.answer, *self.replies])


async def run_jobs(engine: Engine) -> tuple[list[str], bool]:
    runner = JobRunner(engine, executor=lambda: ThreadPoolExecutor(max_workers=1))
    try:
        handled = await runner.run_pending()
    finally:
        runner.close()
    return [r for h in handled for r in h.replies], any(h.refused for h in handled)


async def crews(engine: Engine, line: str, router: Router | None = None) -> Crews:
    """`crews <line>` from the terminal (raises `Refused` as the router does)."""
    answer = await (router or Router(engine)).run(f"crews {line}")
    replies, refused = await run_jobs(engine)
    return Crews(answer.text, replies, refused)

"""Durable jobs: CPU-heavy work a step asks for runs outside the transaction, in a worker
process, and its result comes back to the run that asked, once, even across a crash."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.core.jobs import MAX_ATTEMPTS, JobRunner
from gateway.model import Identity
from tests.kit.engine import Echo, Harness, gathering

ANA = Identity.email("ana@example.org", "Ana")


def threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1)


async def jobs_rows(gw: Harness) -> list[tuple[str, int]]:
    async with gw.store.read() as tx:
        rows = await tx.all("SELECT status, attempts FROM jobs ORDER BY id")
    return [(r[0], r[1]) for r in rows]


async def test_a_job_runs_in_a_worker_process_and_its_result_reaches_the_run(
    tmp_path: Path,
) -> None:
    gw = await Harness.open(tmp_path, {"registration": Echo()}, {"camp": gathering()})
    try:
        await gw.say(ANA, "add 1 2 39")
        person = await gw.person_of(ANA)
        assert (await gw.run(person))[0] == "waiting"
        assert await jobs_rows(gw) == [("pending", 0)]
        runner = JobRunner(gw.engine)  # the real worker process
        try:
            assert len(await runner.run_pending()) == 1
            assert len(await runner.run_pending()) == 0  # done once, not again
        finally:
            runner.close()
        status, state = await gw.run(person)
        assert status == "done" and state["results"] == [{"job": "total", "result": {"sum": 42}}]
        assert await jobs_rows(gw) == [("done", 1)]
    finally:
        await gw.close()


async def test_a_job_pending_at_a_crash_runs_after_the_restart(tmp_path: Path) -> None:
    gw = await Harness.open(tmp_path, {"registration": Echo()}, {"camp": gathering()})
    await gw.say(ANA, "add 5 5")
    person = await gw.person_of(ANA)
    await gw.close()  # the service stops before the job ran

    gw = await Harness.open(tmp_path, {"registration": Echo()}, {"camp": gathering()})
    runner = JobRunner(gw.engine, executor=threads)
    try:
        assert len(await runner.run_pending()) == 1
        _, state = await gw.run(person)
        assert state["results"] == [{"job": "total", "result": {"sum": 10}}]
    finally:
        runner.close()
        await gw.close()


async def test_a_failing_job_and_a_job_that_kills_its_worker_are_reported_not_retried_forever(
    tmp_path: Path,
) -> None:
    gw = await Harness.open(tmp_path, {"registration": Echo()}, {"camp": gathering()})
    runner = JobRunner(gw.engine, executor=threads)
    try:
        await gw.say(ANA, "break 1")
        await runner.run_pending()
        _, state = await gw.run(await gw.person_of(ANA))
        assert state["results"] == [{"job": "broken", "error": "ValueError: no route"}]

        # A job whose worker died MAX_ATTEMPTS times (attempts counted before each run).
        await gw.say(ANA, "add 1")
        async with gw.store.transaction() as tx:
            await tx.execute(
                "UPDATE jobs SET attempts = ? WHERE status = 'pending'", (MAX_ATTEMPTS,)
            )
        await runner.run_pending()
        _, state = await gw.run(await gw.person_of(ANA))
        assert "gave up after 3 attempts" in state["results"][-1]["error"]
    finally:
        runner.close()
        await gw.close()

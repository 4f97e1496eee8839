"""The collated debrief report contains exactly what consent allows, in every format;
its HTML renders in a real headless Chromium with the chart visible."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.debrief import times
from gateway.ops.debrief import Audience, NoDebrief, collect, summary, to_csv, to_html, to_markdown
from tests.engine.test_debrief_engine import ANA, BO, CY, FLOWS, came_and_crewed, camp, until
from tests.kit.engine import Clock, Harness
from tests.kit.optional import require_program

ANONYMOUS = "Trust the slow process"
ORGANISERS_ONLY = "Cooking together"
FOR_THE_CREW = "Listening is a practice"


@pytest.fixture
async def answered(tmp_path: Path) -> AsyncIterator[Harness]:
    """Ana anonymous (4), Bo organisers only (3), Cy her crew (5); Di never answers."""
    gw = await Harness.open(
        tmp_path, FLOWS, {"camp": camp()}, Clock(datetime(2027, 6, 1, 9, tzinfo=UTC))
    )
    await came_and_crewed(gw)
    await gw.engine.schedule()
    with pytest.raises(NoDebrief):
        await collect(gw.store, camp())
    await until(gw, times.prompt_at(camp(), camp().debrief) + timedelta(minutes=1))  # type: ignore[arg-type]
    await gw.say(ANA, "", answers={1: "3", 2: ANONYMOUS, 3: "4", 4: "skip"})
    await gw.say(BO, "", answers={1: "1", 2: ORGANISERS_ONLY, 3: "3", 4: "More silence"})
    for reply in ("2", FOR_THE_CREW, "5", "skip"):
        await gw.say(CY, reply)
    yield gw
    await gw.close()


async def test_organisers_see_names_only_where_consent_allows(answered: Harness) -> None:
    report = await collect(answered.store, camp(), Audience.ORGANISERS)
    assert report.rate == "3 of 4 people answered (75%)"
    md = to_markdown(report)
    assert f"> {ORGANISERS_ONLY} — Bo" in md
    assert f"> {FOR_THE_CREW} — Cy" in md
    assert f"> {ANONYMOUS}\n" in md and "Ana" not in md  # anonymous: no name anywhere
    assert "- 4: " in md and "- 5: " in md
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    by_answer = {r["answer"]: r for r in rows}
    assert by_answer[ANONYMOUS]["by"] == "" and by_answer[ANONYMOUS]["shared_with"] == "everyone"
    assert by_answer[ORGANISERS_ONLY]["by"] == "Bo"
    assert "3 of 4 people answered" in summary(report)


async def test_public_report_holds_only_answers_shared_with_everyone(answered: Harness) -> None:
    # Before and after the deadline (when anonymous answers move to the unlinked pool).
    for moment in ("open", "closed"):
        if moment == "closed":
            await until(answered, times.deadline(camp(), camp().debrief))  # type: ignore[arg-type]
        report = await collect(answered.store, camp(), Audience.PUBLIC)
        for text in (to_markdown(report), to_html(report), to_csv(report)):
            assert ANONYMOUS in text, moment
            assert ORGANISERS_ONLY not in text and FOR_THE_CREW not in text, moment
            assert "More silence" not in text
            for name in ("Ana", "Bo", "Cy", "Di"):
                assert f"— {name}" not in text and f",{name}," not in text, (moment, name)
    organisers = await collect(answered.store, camp(), Audience.ORGANISERS)
    assert organisers.closed and ANONYMOUS in to_markdown(organisers)


async def test_html_renders_in_chromium_with_a_visible_chart(
    answered: Harness, tmp_path: Path
) -> None:
    chromium = require_program("chromium")
    page = tmp_path / "report.html"
    page.write_text(to_html(await collect(answered.store, camp(), Audience.PUBLIC)), "utf-8")
    dom, shot = await asyncio.to_thread(render, chromium, page, tmp_path)
    assert "Looking back on Summer Camp" in dom and ANONYMOUS in dom
    assert "<svg" in dom and ORGANISERS_ONLY not in dom
    from matplotlib.image import imread

    pixels = imread(str(shot))
    # The bars are drawn in the report's green (#3b7d5a): the chart is really on screen.
    green = (
        (abs(pixels[..., 0] - 0x3B / 255) < 0.04)
        & (abs(pixels[..., 1] - 0x7D / 255) < 0.04)
        & (abs(pixels[..., 2] - 0x5A / 255) < 0.04)
    )
    assert green.sum() > 200


def render(chromium: str, page: Path, scratch: Path) -> tuple[str, Path]:
    """The page's DOM after rendering, and a screenshot of it, from headless Chromium."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={scratch / 'profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    shot = scratch / "shot.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=900,2400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dom, shot

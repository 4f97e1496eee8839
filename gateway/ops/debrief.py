"""The collated debrief report: Markdown, HTML (with charts) and CSV, within consent.

Two audiences. The organisers' report has every answer: names beside the answers people
shared with the organisers or their crew, none beside anonymised ones. The public report has
only the answers people shared with everyone, without names. Scale and choice questions are
shown as a distribution (a chart in the HTML, drawn by matplotlib as inline SVG so the file
works offline); free text is quoted.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flows.base import RunView
from flows.common.names import chosen_name
from flows.config import GatheringConfig, Question, QuestionType
from flows.debrief.flow import Share, share_of
from flows.debrief.state import DebriefRun, DebriefShared
from gateway.model import GATHERING_SUBJECT, PersonId
from gateway.store.db import Store


class Audience(StrEnum):
    ORGANISERS = "organisers"
    PUBLIC = "public"


#: Question types whose answers are counted, not quoted.
COUNTED = frozenset(
    {
        QuestionType.SCALE,
        QuestionType.NUMBER,
        QuestionType.SINGLE_CHOICE,
        QuestionType.MULTIPLE_CHOICE,
        QuestionType.YES_NO,
    }
)


@dataclass(frozen=True, slots=True)
class Answer:
    value: Any
    #: Who gave it, only where consent allows naming them to this audience.
    by: str | None
    share: Share


@dataclass
class QuestionReport:
    question: Question
    answers: list[Answer] = field(default_factory=list)

    @property
    def counted(self) -> bool:
        return self.question.type in COUNTED

    def distribution(self) -> list[tuple[str, int]]:
        """Each possible answer with how many gave it, in a stable order."""
        q = self.question
        counts: Counter[str] = Counter()
        for answer in self.answers:
            values = answer.value if isinstance(answer.value, list) else [answer.value]
            counts.update(_label(v) for v in values)
        if q.type == QuestionType.SCALE:
            low, high = (int(b or 0) for b in q.bounds)
            keys = [str(n) for n in range(low, high + 1)]
        elif q.type in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE):
            keys = list(q.options)
        elif q.type == QuestionType.YES_NO:
            keys = ["yes", "no"]
        else:
            keys = sorted(counts, key=lambda k: float(k) if _is_number(k) else 0.0)
        return [(k, counts.get(k, 0)) for k in keys] + [
            (k, n) for k, n in counts.items() if k not in keys
        ]


@dataclass
class DebriefReport:
    gathering: GatheringConfig
    audience: Audience
    asked: int
    answered: int
    questions: list[QuestionReport]
    closed: bool

    @property
    def rate(self) -> str:
        share = f" ({100 * self.answered / self.asked:.0f}%)" if self.asked else ""
        return f"{self.answered} of {self.asked} people answered{share}"


def _label(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class NoDebrief(Exception):
    """The gathering has no debrief, or it has not started."""


async def collect(
    store: Store, gathering: GatheringConfig, audience: Audience = Audience.ORGANISERS
) -> DebriefReport:
    """Read the debrief runs of a gathering into a report for `audience`."""
    if gathering.debrief is None:
        raise NoDebrief(f"{gathering.slug} has no [debrief] section in its gathering file")
    async with store.read() as tx:
        rows = await tx.all(
            "SELECT r.flow, r.person_id, r.status, r.state, p.display_name FROM flow_runs r"
            " JOIN people p ON p.id = r.person_id"
            " WHERE r.gathering = ? AND r.flow IN ('registration', 'debrief')",
            (gathering.slug,),
        )
    # The debrief's own runs are read with its models: a row that does not fit fails here.
    registration: dict[PersonId, RunView] = {}
    debriefs: dict[PersonId, DebriefRun] = {}
    shared: DebriefShared | None = None
    for row in rows:
        person = PersonId(row["person_id"])
        if row["flow"] == "registration":
            registration[person] = RunView(
                person, row["status"], json.loads(row["state"]), row["display_name"] or ""
            )
        elif person == GATHERING_SUBJECT:
            shared = DebriefShared.from_stored(row["state"])
        else:
            debriefs[person] = DebriefRun.from_stored(row["state"])
    if shared is None or shared.prompted is None:
        raise NoDebrief(f"the debrief of {gathering.slug} has not started yet")
    reports = {q.id: QuestionReport(q) for q in gathering.debrief.questions}
    for person, run in sorted(debriefs.items()):
        answers = run.answers
        share = share_of(answers)
        if audience == Audience.PUBLIC and share != Share.EVERYONE:
            continue
        named = share in (Share.ORGANISERS, Share.CREW) and audience == Audience.ORGANISERS
        name = chosen_name(gathering, person, registration.get(person)) if named else None
        for question_id, report in reports.items():
            if answers.get(question_id) is not None:
                report.answers.append(Answer(answers[question_id], name, share))
    # After the deadline, anonymised answers live only in the gathering's unordered pool.
    for question_id, values in (shared.anonymous or {}).items():
        if question_id in reports:
            reports[question_id].answers.extend(Answer(v, None, Share.EVERYONE) for v in values)
    asked = len(shared.asked or [])
    answered = sum(1 for run in debriefs.values() if run.finished)
    return DebriefReport(
        gathering=gathering,
        audience=audience,
        asked=asked,
        answered=answered,
        questions=list(reports.values()),
        closed=shared.closed is not None,
    )


# -- writing it out -------------------------------------------------------------------------


def _title(report: DebriefReport) -> str:
    kind = "" if report.audience == Audience.ORGANISERS else " (shared with everyone)"
    return f"Looking back on {report.gathering.name}{kind}"


def _quote(answer: Answer) -> str:
    return f"{_label(answer.value)}" + (f" — {answer.by}" if answer.by else "")


def to_markdown(report: DebriefReport) -> str:
    lines = [f"# {_title(report)}", "", f"{report.rate}.", ""]
    if report.audience == Audience.ORGANISERS:
        lines += [
            "Names appear only beside answers shared with the organisers or a crew;"
            " answers shared with everyone are anonymous.",
            "",
        ]
    for number, q in enumerate(report.questions, start=1):
        lines += [f"## {number}. {q.question.prompt}", "", f"{len(q.answers)} answer(s).", ""]
        if q.counted:
            width = max((n for _, n in q.distribution()), default=0) or 1
            for label, n in q.distribution():
                lines.append(f"- {label}: {'█' * round(10 * n / width)} {n}")
        else:
            lines += [f"> {_quote(a)}".replace("\n", "\n> ") + "\n" for a in q.answers]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def to_csv(report: DebriefReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["question_id", "question", "answer", "by", "shared_with"])
    for q in report.questions:
        for a in q.answers:
            row = [q.question.id, q.question.prompt, _label(a.value), a.by or "", a.share.value]
            writer.writerow([_cell(c) for c in row])
    return out.getvalue()


def _cell(value: str) -> str:
    """A spreadsheet must not run an answer as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def chart_svg(q: QuestionReport) -> str:
    """A horizontal bar chart of a distribution, as inline SVG (no external files)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    distribution = q.distribution()
    labels = [label for label, _ in distribution]
    counts = [n for _, n in distribution]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "debrief"}):
        figure, axes = pyplot.subplots(figsize=(5, 0.35 * len(labels) + 0.8))
        try:
            axes.barh(labels, counts, color="#3b7d5a")
            axes.invert_yaxis()
            axes.set_xlabel("people")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            for side in ("top", "right"):
                axes.spines[side].set_visible(False)
            figure.tight_layout()
            out = io.StringIO()
            figure.savefig(out, format="svg", metadata={"Date": None})
        finally:
            pyplot.close(figure)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def to_html(report: DebriefReport) -> str:
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(_title(report))}</title>",
        "<style>body{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}"
        "blockquote{border-left:3px solid #3b7d5a;margin:.5rem 0;padding:.2rem .8rem}"
        ".by{color:#555}.chart svg{max-width:100%;height:auto}</style>",
        "</head><body>",
        f"<h1>{e(_title(report))}</h1>",
        f'<p class="rate">{e(report.rate)}.</p>',
    ]
    for number, q in enumerate(report.questions, start=1):
        parts.append(f'<section class="question" id="q-{e(q.question.id)}">')
        parts.append(f"<h2>{number}. {e(q.question.prompt)}</h2>")
        parts.append(f"<p>{len(q.answers)} answer(s).</p>")
        if q.counted and q.answers:
            parts.append(f'<figure class="chart">{chart_svg(q)}</figure>')
            items = "".join(f"<li>{e(label)}: {n}</li>" for label, n in q.distribution())
            parts.append(f'<ul class="counts">{items}</ul>')
        else:
            for a in q.answers:
                by = f' <span class="by">— {e(a.by)}</span>' if a.by else ""
                text = e(_label(a.value)).replace("\n", "<br>")
                parts.append(f"<blockquote>{text}{by}</blockquote>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def summary(report: DebriefReport) -> str:
    """A few lines for the organisers' room: the rate and each counted question's spread."""
    lines = [f"{_title(report)}: {report.rate}" + (" (closed)." if report.closed else ".")]
    for number, q in enumerate(report.questions, start=1):
        if q.counted and q.answers:
            spread = ", ".join(f"{label}: {n}" for label, n in q.distribution() if n)
            lines.append(f"{number}. {q.question.prompt} — {spread}")
        else:
            lines.append(f"{number}. {q.question.prompt} — {len(q.answers)} answer(s)")
    return "\n".join(lines)


def write_all(report: DebriefReport, stem: str) -> dict[str, str]:
    """The three files' contents by name (`<stem>.md`, `.html`, `.csv`)."""
    return {
        f"{stem}.md": to_markdown(report),
        f"{stem}.html": to_html(report),
        f"{stem}.csv": to_csv(report),
    }

"""The `gateway` command: run, check, status, export, forget, demo, mail inspect, crews."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.cli.mail import mail_parser
from gateway.config import (
    ConfigError,
    LoadedConfig,
    is_gathering_file,
    load_config,
    load_gathering_file,
    secret_problems,
)
from gateway.store.db import StoreMissing

if TYPE_CHECKING:
    from gateway.core.engine import Engine, Handled
    from gateway.ops.router import Answer

DEFAULT_CONFIG = os.environ.get("GATEWAY_CONFIG", "gateway.toml")
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose, running=args.command == "run")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(_config_problems(exc), file=sys.stderr)
        return 2
    except StoreMissing as exc:
        print(
            f"{exc}: check store.path in {args.config}"
            " (`gateway run` creates the database on its first start)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


#: Libraries whose INFO lines carry people's addresses: aiosmtpd logs every envelope sender
#: and recipient on "mail.log". Kept at WARNING unless the organiser asks for --verbose.
CHATTY_LOGGERS = ("mail.log",)


def configure_logging(*, verbose: bool, running: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO if running else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(level if verbose else max(level, logging.WARNING))


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse prints the message, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, config: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if config:
            p.add_argument(
                "--config",
                "-c",
                default=DEFAULT_CONFIG,
                help=f"service config file (default: {DEFAULT_CONFIG}, or $GATEWAY_CONFIG)",
            )
        p.set_defaults(handler=handler)
        return p

    command("run", _run, "run the service")
    check = command("check", _check, "validate a config and its gathering files", config=False)
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    check.add_argument("--config", "-c", dest="config_option", help="the same, as elsewhere")
    command("status", _status, "registrations per gathering and the outbox")
    export = command("export", _export, "export a gathering's registrations")
    export.add_argument("gathering")
    export.add_argument("--format", choices=["csv"], default="csv")
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    forget = command("forget", _forget, "erase a person's personal data everywhere")
    forget.add_argument("person", help="person id, email address or Matrix id")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    outbox = command(
        "outbox", _outbox_retry, "send dead messages again (after an outage, a fixed address)"
    )
    outbox.add_argument("action", choices=["retry"])
    outbox.add_argument("ids", nargs="*", type=int, help="outbox ids (default: every dead one)")
    demo = command(
        "demo", _demo, "run a demo gathering end to end on embedded defaults", config=False
    )
    demo.add_argument("--participants", type=_at_least_one, default=14)
    demo.add_argument("--capacity", type=int, default=10)
    demo.add_argument("--database", type=Path, help="keep the demo database here")
    mail_parser(sub, DEFAULT_CONFIG)
    _crews_parser(sub)
    debrief = sub.add_parser("debrief", help="the debrief after a gathering")
    debrief_actions = debrief.add_subparsers(dest="debrief_command", required=True)
    report = debrief_actions.add_parser(
        "report",
        help="write the collated report (Markdown, HTML, CSV)",
        description="Writes <gathering>-debrief.{md,html,csv} (with --public: only answers"
        " shared with everyone, without names) and prints a summary.",
    )
    report.add_argument("gathering")
    report.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="service config file")
    report.add_argument("--public", action="store_true", help="only answers shared with everyone")
    report.add_argument("--out", "-o", type=Path, default=Path("."), help="directory to write to")
    report.set_defaults(handler=_debrief_report)
    travel = sub.add_parser("travel", help="travel sharing: the plan, approval")
    travel_actions = travel.add_subparsers(dest="travel_command", required=True)
    for name, help in (
        ("plan", "plan rides now (or show the plan with --show) and print it"),
        ("approve", "let the plan's proposals go out (when the gathering asks for review)"),
    ):
        action = travel_actions.add_parser(name, help=help, description=help)
        action.add_argument("gathering")
        action.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="service config file")
        action.add_argument("--html", type=Path, help="also write the plan as a map (HTML)")
        if name == "plan":
            action.add_argument("--show", action="store_true", help="show the stored plan only")
        action.set_defaults(handler=_travel, travel_action=name)
    return parser


def _asyncio(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _run(args: argparse.Namespace) -> int:
    from gateway.app.channels import build_service

    config = load_config(args.config)
    if problems := secret_problems(config):
        raise ConfigError(problems)

    async def go() -> int:
        await (await build_service(config)).run()
        return 0

    return _asyncio(go())


def _check(args: argparse.Namespace) -> int:
    path = args.config_option or args.config
    if is_gathering_file(path):
        gathering = load_gathering_file(path)
        print(f"{path}: OK (a gathering file: {gathering.name}, capacity {gathering.capacity})")
        return 0
    config = load_config(path)
    if problems := secret_problems(config):
        raise ConfigError(problems)
    print(f"{config.path}: OK")
    for slug, g in config.gatherings.items():
        print(
            f"  {slug}: {g.name}, {g.starts} – {g.ends} ({g.timezone}), capacity {g.capacity},"
            f" {len(g.registration.questions)} questions ({config.sources[slug]})"
        )
        if g.debrief is not None:
            from flows.debrief import times

            prompt = times.prompt_at(g, g.debrief).strftime("%Y-%m-%d %H:%M")
            print(
                f"    debrief: {len(g.debrief.questions)} questions, asked {prompt}"
                f" ({g.timezone}), {g.debrief.reminders} reminder(s), open"
                f" {g.debrief.answer_days:g} days"
            )
        if g.travel is not None:
            print(
                f"    travel: to {g.travel.venue_town}; questions {g.travel.ask_days_before:g}"
                f" days before, plan {g.travel.plan_days_before:g} days before"
                + (", reviewed by the organisers" if g.travel.review else "")
            )
    return 0


def _on_engine(config: LoadedConfig, action: Callable[[Engine], Awaitable[T]]) -> T:
    """Run `action` on the engine of an existing database (never a new one), then close it."""
    from gateway.app.service import build_engine

    async def go() -> T:
        engine = await build_engine(config, create=False)
        try:
            return await action(engine)
        finally:
            await engine.store.close()

    return asyncio.run(go())


def _route(config: LoadedConfig, line: str, *, jobs: bool = False) -> tuple[Answer, list[Handled]]:
    """Run an organiser's command through the same router as the chat room and mail; with
    `jobs`, also run the jobs it asked for (a solve, a plan) here: what became of their
    results (their replies to this command are in `Handled.replies`)."""
    from gateway.app.channels import organisers_router
    from gateway.core.jobs import JobRunner

    async def go(engine: Engine) -> tuple[Answer, list[Handled]]:
        answer = await organisers_router(engine, lambda: config).run(line)
        if not jobs:
            return answer, []
        runner = JobRunner(engine)
        try:
            return answer, await runner.run_pending()
        finally:
            runner.close()

    return _on_engine(config, go)


def _routed(
    config: LoadedConfig, line: str, *, jobs: bool = False
) -> tuple[Answer, list[Handled]] | None:
    """The same, printing a refusal (the organiser's mistake) instead of raising it."""
    from gateway.ops.router import Refused

    try:
        return _route(config, line, jobs=jobs)
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        return None


def _status(args: argparse.Namespace) -> int:
    routed = _routed(load_config(args.config), "status")
    if routed is None:
        return 1
    print(routed[0].text)
    return 0


def _outbox_retry(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from gateway.core.outbox import requeue_dead

    config = load_config(args.config)
    now = datetime.now(UTC)
    count = _on_engine(config, lambda engine: requeue_dead(engine.store, args.ids, now=now))
    print(f"requeued {count} dead message{'s' if count != 1 else ''}")
    return 0 if count or not args.ids else 1


def _export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if unknown_gathering(config, args.gathering):
        return 2
    routed = _routed(config, f"export {args.gathering}")
    if routed is None:
        return 1
    data = routed[0].attachments[0].data
    if args.output:
        args.output.write_bytes(data)
        rows = data.count(b"\n") - 1
        print(f"wrote {rows} rows to {args.output}")
    else:
        sys.stdout.write(data.decode())
    return 0


def _debrief_report(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if unknown_gathering(config, args.gathering):
        return 2
    routed = _routed(config, f"debrief {args.gathering}" + (" public" if args.public else ""))
    if routed is None:
        return 1
    answer = routed[0]
    args.out.mkdir(parents=True, exist_ok=True)
    for file in answer.attachments:
        (args.out / file.name).write_bytes(file.data)
    print(answer.text)
    stem = answer.attachments[0].name.rpartition(".")[0]
    print(f"wrote {args.out / stem}.md, .html and .csv")
    return 0


def _travel(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if unknown_gathering(config, args.gathering):
        return 2
    slug = args.gathering
    if args.travel_action == "plan" and not args.show:
        # Plan here and now (the job runs in this process), then show what came of it.
        if _routed(config, f"travel {slug} plan", jobs=True) is None:
            return 1
    action = "approve" if args.travel_action == "approve" else ""
    routed = _routed(config, f"travel {slug} {action}".strip())
    if routed is None:
        return 1
    answer = routed[0]
    print(answer.text)
    if args.html:
        args.html.write_bytes(answer.attachments[0].data)
        print(f"wrote {args.html}")
    return 0


def _forget(args: argparse.Namespace) -> int:
    from gateway.app.channels import erase_hooks
    from gateway.app.service import build_engine
    from gateway.ops.privacy import StillInLog, forget_person, leave_runs
    from gateway.ops.reports import resolve_person

    config = load_config(args.config)

    async def go() -> int:
        engine = await build_engine(config, create=False)
        try:
            person = await resolve_person(engine.store, args.person)
            if person is None:
                print(f"no person known as {args.person!r}", file=sys.stderr)
                return 1
            if not args.yes and not _confirm(f"Erase all personal data of person {person}?"):
                print("nothing erased")
                return 1
            await leave_runs(engine, person)  # seats freed and offered, like a cancellation
            touched = await forget_person(engine.store, person, erase_hooks())
        except LookupError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        except StillInLog as exc:
            print(
                f"person {person} erased, but {exc}: the erased data stays in the database's"
                " -wal file until its next checkpoint; run forget again once it is stopped",
                file=sys.stderr,
            )
            return 1
        finally:
            await engine.store.close()
        print(f"person {person} erased: " + ", ".join(f"{k} {v}" for k, v in touched.items()))
        return 0

    return _asyncio(go())


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{question} Use --yes when not running interactively.", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.story import run_demo

    return _asyncio(
        run_demo(participants=args.participants, capacity=args.capacity, database=args.database)
    )


def unknown_gathering(config: LoadedConfig, slug: str) -> bool:
    """True (after telling the organiser which gatherings exist) when `slug` is not one."""
    if slug in config.gatherings:
        return False
    print(f"no gathering {slug!r}; known: {', '.join(config.gatherings)}", file=sys.stderr)
    return True


def _config_problems(exc: ConfigError) -> str:
    count = len(exc.problems)
    return f"{count} problem{'s' if count != 1 else ''} in the configuration:\n" + "\n".join(
        f"  {p}" for p in exc.problems
    )


# --- crews: propose, adjust, approve and follow crews; solve a spreadsheet ------------------

_CREWS_SOLVE_HELP = """Columns (header row, any order): id (required), name, languages (en;pt),
facilitator (yes/no), together and not_with (ids separated by ;), pinned_crew (from 1);
any other column is balanced across crews (travel_group keeps travel companions together).
Prints the crews; --output writes an id,name,crew CSV."""


def _crews_parser(sub: Any) -> None:
    crews = sub.add_parser("crews", help="crew proposals, approval, roster; solve a spreadsheet")
    actions = crews.add_subparsers(dest="crews_command", required=True)

    def action(name: str, help: str, *args: str, solver: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help)
        p.add_argument(
            "--config",
            "-c",
            default=DEFAULT_CONFIG,
            help=f"service config file (default: {DEFAULT_CONFIG})",
        )
        p.add_argument("gathering")
        for arg in args:
            p.add_argument(arg)
        if solver:
            p.add_argument(
                "--overrides",
                type=Path,
                help="pins/moves/swaps TOML (default: <slug>.crews.toml beside the gathering file)",
            )
            p.add_argument(
                "--seconds", type=float, help="solver time budget (spent unless the best is proven)"
            )
            p.add_argument("--seed", type=int, default=0)
        p.set_defaults(handler=_crews_run, crews_action=name)
        return p

    action(
        "propose", "propose crews for everyone registered (around pins)", solver=True
    ).add_argument("--fresh", action="store_true", help="ignore the stored proposal")
    action("approve", "approve the stored proposal and announce it")
    action("pin", "pin a person to a crew and propose again", "person", "crew", solver=True)
    action(
        "move", "move a person to a crew (a pin) and propose again", "person", "crew", solver=True
    )
    action(
        "swap",
        "swap two people's crews (two pins) and propose again",
        "person",
        "other",
        solver=True,
    )
    action("unpin", "remove a person's pin and propose again", "person", solver=True)
    action(
        "update",
        "after approval: the smallest change for late registrations and cancellations",
        solver=True,
    )
    action("round", "propose a new round that mixes people", solver=True)
    action("show", "show the stored proposal (or the roster)")
    action("roster", "approved crews and crew-call answers").add_argument(
        "--csv", action="store_true", help="as CSV"
    )
    solve = actions.add_parser(
        "solve", help="crews for a spreadsheet alone (no database)", description=_CREWS_SOLVE_HELP
    )
    solve.add_argument("--input", "-i", type=Path, required=True, help="people CSV")
    solve.add_argument("--size", help="crew size bounds, e.g. 4-8")
    solve.add_argument("--crews", type=int, help="number of crews")
    solve.add_argument(
        "--seconds", type=float, default=10.0, help="time budget (spent unless the best is proven)"
    )
    solve.add_argument("--seed", type=int, default=0)
    solve.add_argument("--output", "-o", type=Path, help="write id,name,crew CSV here")
    solve.set_defaults(handler=_crews_solve)


def _crews_progress() -> Callable[[float, int], None] | None:
    """A one-line progress display on a terminal; nothing when output is redirected."""
    if not sys.stderr.isatty():
        return None

    def show(elapsed: float, objective: int) -> None:
        print(
            f"\r  solving: {elapsed:5.1f} s, best objective {objective}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def _crews_solve(args: argparse.Namespace) -> int:
    from flows.crews.solver.solve import CsvError, InvalidInput
    from gateway.ops.crews.commands import CrewsError, solve_csv

    try:
        table, assignment = solve_csv(
            args.input,
            size=args.size,
            crews=args.crews,
            seconds=args.seconds,
            seed=args.seed,
            progress=_crews_progress(),
        )
    except (CsvError, InvalidInput, CrewsError, OSError) as exc:
        print(f"{args.input}: {exc}", file=sys.stderr)
        return 1
    finally:
        if sys.stderr.isatty():
            print(file=sys.stderr)
    sys.stdout.write(table)
    if args.output:
        args.output.write_text(assignment, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def _crews_run(args: argparse.Namespace) -> int:
    """`gateway crews ACTION GATHERING …` is `crews GATHERING ACTION …` for the router; a
    solve runs here, in this process's job runner, and its proposal is printed."""
    config = load_config(args.config)
    if unknown_gathering(config, args.gathering):
        return 2
    words = [args.gathering, args.crews_action]
    words += [getattr(args, name) for name in ("person", "other", "crew") if hasattr(args, name)]
    if getattr(args, "fresh", False):
        words.append("--fresh")
    if getattr(args, "csv", False):
        words.append("--csv")
    if getattr(args, "seconds", None) is not None:
        words += ["--seconds", str(args.seconds)]
    if getattr(args, "seed", 0):
        words += ["--seed", str(args.seed)]
    if getattr(args, "overrides", None) is not None:
        words += ["--overrides", str(args.overrides)]
    routed = _routed(config, "crews " + shlex.join(words), jobs=True)
    if routed is None:
        return 1
    answer, handled = routed
    if answer.text:
        print(answer.text.rstrip("\n"))
    for done in handled:
        for reply in done.replies:
            print("\n" + reply.rstrip("\n"), file=sys.stderr if done.refused else sys.stdout)
    return 1 if any(done.refused for done in handled) else 0

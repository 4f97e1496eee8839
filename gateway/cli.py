"""The `gateway` command: run, check, status, export, forget, demo, mail inspect, crews."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, load_config

DEFAULT_CONFIG = os.environ.get("GATEWAY_CONFIG", "gateway.toml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.command == "run" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(_config_problems(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str,
                config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if config:
            p.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                           help=f"service config file (default: {DEFAULT_CONFIG}, or $GATEWAY_CONFIG)")
        p.set_defaults(handler=handler)
        return p

    command("run", _run, "run the service")
    check = command("check", _check, "validate a config and its gathering files", config=False)
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    command("status", _status, "registrations per gathering and the outbox")
    export = command("export", _export, "export a gathering's registrations")
    export.add_argument("gathering")
    export.add_argument("--format", choices=["csv"], default="csv")
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    forget = command("forget", _forget, "erase a person's personal data everywhere")
    forget.add_argument("person", help="person id, email address or Matrix id")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    demo = command("demo", _demo, "run a demo gathering end to end on embedded defaults",
                   config=False)
    demo.add_argument("--participants", type=int, default=14)
    demo.add_argument("--capacity", type=int, default=10)
    demo.add_argument("--database", type=Path, help="keep the demo database here")
    mail = sub.add_parser("mail", help="email tools").add_subparsers(dest="mail_command", required=True)
    inspect = mail.add_parser("inspect", help="show how the gateway reads a raw email (.eml)")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--config", "-c", default=None, help="service config (for the gateway's address)")
    inspect.set_defaults(handler=_mail_inspect)
    return parser


def _asyncio(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _run(args: argparse.Namespace) -> int:
    from gateway.channels import build_channels
    from gateway.service import Service, build_engine

    config = load_config(args.config)

    async def go() -> int:
        channels = build_channels(config)
        engine = await build_engine(config, migrations=channels.migrations,
                                    token_maker=channels.token_maker)
        await Service(config, channels, engine).run()
        return 0

    return _asyncio(go())


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{config.path}: OK")
    for slug, g in config.gatherings.items():
        print(f"  {slug}: {g.name}, {g.starts} – {g.ends} ({g.timezone}), capacity {g.capacity},"
              f" {len(g.registration.questions)} questions ({config.sources[slug]})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from gateway.reports import format_status, status_report
    from gateway.service import build_engine

    config = load_config(args.config)

    async def go() -> int:
        engine = await build_engine(config)
        try:
            print(format_status(await status_report(engine.store, config.gatherings)))
        finally:
            await engine.store.close()
        return 0

    return _asyncio(go())


def _export(args: argparse.Namespace) -> int:
    from gateway.reports import export_csv
    from gateway.service import build_engine

    config = load_config(args.config)
    if args.gathering not in config.gatherings:
        print(f"no gathering {args.gathering!r}; known: {', '.join(config.gatherings)}", file=sys.stderr)
        return 2

    async def go() -> int:
        engine = await build_engine(config)
        try:
            text = await export_csv(engine.store, config.gatherings[args.gathering])
        finally:
            await engine.store.close()
        if args.output:
            args.output.write_text(text, encoding="utf-8")
            print(f"wrote {text.count(chr(10)) - 1} rows to {args.output}")
        else:
            sys.stdout.write(text)
        return 0

    return _asyncio(go())


def _forget(args: argparse.Namespace) -> int:
    from gateway.reports import forget_person, resolve_person
    from gateway.service import build_engine

    config = load_config(args.config)

    async def go() -> int:
        engine = await build_engine(config)
        try:
            person = await resolve_person(engine.store, args.person)
            if person is None:
                print(f"no person known as {args.person!r}", file=sys.stderr)
                return 1
            if not args.yes and not _confirm(f"Erase all personal data of person {person}?"):
                print("nothing erased")
                return 1
            touched = await forget_person(engine.store, person)
        except LookupError as exc:
            print(str(exc), file=sys.stderr)
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
    from gateway.demo import run_demo

    return _asyncio(run_demo(participants=args.participants, capacity=args.capacity,
                             database=args.database))


def _mail_inspect(args: argparse.Namespace) -> int:
    from gateway.transports.email_inbound import inspect_email

    settings = load_config(args.config).service.email if args.config else None
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        print(f"{args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    print(json.dumps(inspect_email(raw, settings), indent=2, ensure_ascii=False, default=str))
    return 0


def _config_problems(exc: ConfigError) -> str:
    count = len(exc.problems)
    return f"{count} problem{'s' if count != 1 else ''} in the configuration:\n" + "\n".join(
        f"  {p}" for p in exc.problems
    )

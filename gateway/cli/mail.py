"""`gateway mail …`: how the service reads a mail, from a file or from its quarantine."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import LoadedConfig, load_config


def mail_parser(sub: Any, default_config: str) -> None:
    mail = sub.add_parser("mail", help="email tools").add_subparsers(
        dest="mail_command", required=True
    )
    inspect = mail.add_parser("inspect", help="show how the gateway reads a raw email (.eml)")
    inspect.add_argument("file", type=Path, nargs="?")
    inspect.add_argument(
        "--quarantined",
        type=int,
        metavar="NUMBER",
        help="a mail the service set aside (listed by `gateway status`)",
    )
    inspect.add_argument(
        "--raw",
        action="store_true",
        help="print the mail itself, as it came (e.g. to deliver it again)",
    )
    inspect.add_argument(
        "--config",
        "-c",
        default=default_config,
        help="service config: the gateway's address and reply-token secret",
    )
    inspect.set_defaults(handler=mail_inspect)


def mail_inspect(args: argparse.Namespace) -> int:
    from gateway.app.registry import default_flows
    from gateway.channels.email.inbound import conversation_index, inspect_email

    config = load_config(args.config)
    settings = config.service.email
    if settings is None:
        print(
            f"{config.path} has no [email] section: the gateway's address and token secret"
            " are needed to read a mail as the service would",
            file=sys.stderr,
        )
        return 2
    if (args.file is None) == (args.quarantined is None):
        print("give either a FILE or --quarantined NUMBER", file=sys.stderr)
        return 2
    raw = _mail_bytes(args, config)
    if raw is None:
        return 2
    if args.raw:
        sys.stdout.buffer.write(raw)
        return 0
    conversations = conversation_index((g, f) for g in config.gatherings for f in default_flows())
    reading = inspect_email(raw, settings, conversations=conversations)
    print(json.dumps(reading, indent=2, ensure_ascii=False, default=str))
    return 0


def _mail_bytes(args: argparse.Namespace, config: LoadedConfig) -> bytes | None:
    """The mail to read: a file, or a quarantined mail from the service's store."""
    if args.file is not None:
        try:
            return bytes(args.file.read_bytes())
        except OSError as exc:
            print(f"{args.file}: {exc.strerror}", file=sys.stderr)
            return None
    from gateway.channels.email.failures import quarantined_raw
    from gateway.store import open_store

    async def load() -> bytes | None:
        # Relative to the config file, as the service opens it.
        store = await open_store(config.path.parent / config.service.store.path, create=False)
        try:
            return await quarantined_raw(store, args.quarantined)
        finally:
            await store.close()

    raw = asyncio.run(load())
    if raw is None:
        print(f"no quarantined mail number {args.quarantined}", file=sys.stderr)
    return raw

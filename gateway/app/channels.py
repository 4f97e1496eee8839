"""Which transports a config asks for, wired to the engine: the only place that knows them all."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flows.base import Flow
from gateway.app.service import Channels, Service, build_engine
from gateway.channels.email.failures import MIGRATIONS as EMAIL_MIGRATIONS
from gateway.channels.email.failures import MailFailures, set_aside_mail
from gateway.channels.email.failures import forget_identities as email_forget
from gateway.channels.email.inbound import conversation_index, token_maker
from gateway.channels.email.receive import ImapReader, MailIntake, MailListener
from gateway.channels.email.send import EmailTransport
from gateway.channels.matrix.rooms import forget_identities as matrix_forget
from gateway.channels.matrix.transport import MIGRATIONS as MATRIX_MIGRATIONS
from gateway.channels.matrix.transport import MatrixTransport
from gateway.config import EmailSettings, LoadedConfig, crew_overrides_path
from gateway.core.engine import Engine
from gateway.model import Channel, PersonId
from gateway.ops.privacy import EraseHook
from gateway.ops.router import Router
from gateway.store import Store
from gateway.store.db import load_cursor
from gateway.store.migrations import Migration


def channel_migrations(config: LoadedConfig) -> list[Migration]:
    """Tables of the configured transports (created even before they first connect)."""
    return [
        *(EMAIL_MIGRATIONS if config.service.email else []),
        *(MATRIX_MIGRATIONS if config.service.matrix else []),
    ]


def reply_token_maker(config: LoadedConfig) -> Callable[[PersonId, str], str] | None:
    return token_maker(config.service.email) if config.service.email else None


async def build_service(
    config: LoadedConfig, *, flows: Mapping[str, Flow] | None = None, **engine_args: Any
) -> Service:
    """The service exactly as `gateway run` starts it (tests may give other flows, a clock)."""
    engine = await build_engine(
        config,
        migrations=channel_migrations(config),
        flows=flows,
        token_maker=reply_token_maker(config),
        **engine_args,
    )
    service = Service(config, engine, build_channels)
    engine.desk = organisers_router(engine, lambda: service.config).handle
    return service


def organisers_router(engine: Engine, config: Callable[[], LoadedConfig]) -> Router:
    """The organisers' command router: crew overrides beside the current config's gathering
    files, and the mail the email channel set aside for `status`."""

    def overrides(slug: str) -> Path | None:
        current = config()
        return crew_overrides_path(current, slug) if slug in current.sources else None

    return Router(engine, crew_overrides=overrides, set_aside=set_aside_mail)


def build_channels(config: LoadedConfig, engine: Engine, wake: Callable[[], None]) -> Channels:
    channels = Channels()
    email = config.service.email
    if email is not None:
        transport = EmailTransport(
            email, root_subject=functools.partial(root_subject, engine.store), clock=engine.clock
        )
        channels.senders[Channel.EMAIL] = transport
        channels.closers.append(transport.close)
        intake = mail_intake(config, email, engine, wake)
        channels.on_reload.append(
            lambda fresh: setattr(intake, "conversations", _conversations(fresh, engine))
        )
        if email.imap is not None:
            reader = ImapReader(email.imap, intake, functools.partial(load_cursor, engine.store))
            channels.receivers.append(reader.run)
        if email.listener is not None:
            channels.receivers.append(MailListener(email, intake).run)
    matrix = config.service.matrix
    if matrix is not None:
        # Relative to the config file, like the store: started from another directory, the
        # bot would otherwise lose its device (Synapse's send dedupe, E2EE keys) to a new one.
        matrix = matrix.model_copy(update={"store_path": config.path.parent / matrix.store_path})
        organisers = [o.matrix for o in config.service.organisers if o.matrix]
        bot = MatrixTransport(
            matrix, engine.store, organisers=organisers, wake=wake, key_wait=matrix.key_wait
        )
        channels.senders[Channel.MATRIX] = bot
        channels.receivers.append(functools.partial(bot.run, engine))
        channels.closers.append(bot.close)
    return channels


def mail_intake(
    config: LoadedConfig, email: EmailSettings, engine: Engine, wake: Callable[[], None]
) -> MailIntake:
    """Where the email channel's readers hand mail to the engine (readers made here and by
    tests that drive a reader or listener themselves)."""
    return MailIntake(
        email,
        engine,
        MailFailures(engine.store, engine.clock),
        conversations=_conversations(config, engine),
        after_commit=wake,
    )


def _conversations(config: LoadedConfig, engine: Engine) -> dict[str, tuple[str, str]]:
    """Every (gathering, flow) a reply token may name."""
    return conversation_index((g, f) for g in config.gatherings for f in engine.flows)


async def root_subject(store: Store, key: str) -> str | None:
    """The subject of a conversation's first message, so replies keep one thread."""
    async with store.read() as tx:
        row = await tx.one(
            "SELECT json_extract(payload, '$.subject') FROM outbox WHERE idempotency_key = ?",
            (key,),
        )
    return str(row[0]) if row and row[0] else None


def erase_hooks() -> list[EraseHook]:
    """What each channel keeps about a person, erased by `gateway forget` (both always run:
    a channel's tables may exist from an earlier config even when it is off now)."""
    return [email_forget, matrix_forget]

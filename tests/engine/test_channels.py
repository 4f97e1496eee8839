"""How build_channels turns the service config into transports."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app.channels import build_channels, channel_migrations
from gateway.app.service import build_engine
from gateway.channels.matrix.transport import MatrixTransport
from gateway.config import load_config
from gateway.model import Channel

CONFIG = """
[store]
path = "gateway.sqlite3"

[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.test"
access_token = { value = "unused" }
store_path = "matrix"
"""


async def test_a_relative_matrix_store_path_is_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "gateway.toml").write_text(CONFIG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(tmp_path / "etc" / "gateway.toml")
    engine = await build_engine(config, migrations=channel_migrations(config))
    channels = build_channels(config, engine, lambda: None)
    try:
        bot = channels.senders[Channel.MATRIX]
        assert isinstance(bot, MatrixTransport)
        assert bot.settings.store_path == tmp_path / "etc" / "matrix"
        assert (tmp_path / "etc" / "matrix").is_dir()
        assert not (elsewhere / "matrix").exists()
    finally:
        for close in channels.closers:
            await close()
        await engine.store.close()

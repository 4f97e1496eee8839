"""The templates' sandbox: dict keys by dot, dict methods and unsafe attributes as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from gateway.core.render import _environment


@pytest.fixture
def env(tmp_path: Path) -> SandboxedEnvironment:
    return _environment(tmp_path, autoescape=False)


def test_a_dict_key_is_read_with_a_dot(env: SandboxedEnvironment) -> None:
    assert env.from_string("{{ g.name }}").render(g={"name": "Camp"}) == "Camp"


def test_a_dict_method_name_is_still_the_method(env: SandboxedEnvironment) -> None:
    rendered = env.from_string("{{ g.items is callable }} {{ g['items'] }}").render(
        g={"items": "key"}
    )
    assert rendered == "True key"


def test_a_missing_key_is_undefined(env: SandboxedEnvironment) -> None:
    with pytest.raises(UndefinedError):
        env.from_string("{{ g.missing }}").render(g={"name": "Camp"})


def test_unsafe_attributes_stay_out_of_reach(env: SandboxedEnvironment) -> None:
    with pytest.raises(SecurityError):
        env.from_string("{{ g.__class__.__subclasses__() }}").render(g={"name": "Camp"})

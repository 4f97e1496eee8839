"""Optional test dependencies: skipped on a developer's machine, a failure in CI."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def unavailable(reason: str) -> NoReturn:
    """Skip the test (or the module, at import) for want of `reason` — or, when CI is set,
    fail, so that a CI machine that lost a package, program or server cannot pass by
    skipping its tests. Every "not installed here" in the suite goes through this."""
    if in_ci():
        pytest.fail(f"{reason} [CI is set: a missing dependency is a failure]", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str) -> ModuleType:
    """Import `name` for a test or a test module (use this, never `pytest.importorskip`)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"{name} is not installed ({exc})")


def require_program(name: str) -> str:
    """The path of the program `name`."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed")
    return path

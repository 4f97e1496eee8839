"""Optional test dependencies: skipped on a developer's machine, a failure in CI."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def require_module(name: str) -> ModuleType:
    """Import `name` for a test module; without it, skip the module — or, when CI is set,
    fail, so that a CI machine that lost a package cannot pass by skipping its tests."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        reason = f"{name} is not installed ({exc})"
        if in_ci():
            pytest.fail(f"{reason} [CI is set: a missing package is a failure]", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def require_program(name: str) -> str:
    """The path of the program `name`; without it, skip — or, when CI is set, fail."""
    import shutil

    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed"
        if in_ci():
            pytest.fail(f"{reason} [CI is set: a missing program is a failure]", pytrace=False)
        pytest.skip(reason)
    return path

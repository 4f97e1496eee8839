"""A dependency missing on a CI machine fails the run; on a developer's machine it skips."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.kit.optional import require_module, require_program

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def without_vodozemac(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules: Python's own way of saying "not importable".
    monkeypatch.setitem(sys.modules, "vodozemac", None)


@pytest.mark.usefixtures("without_vodozemac")
@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_module_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="vodozemac is not installed"):
        require_module("vodozemac")


@pytest.mark.usefixtures("without_vodozemac")
def test_a_missing_module_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="vodozemac is not installed"):
        require_module("vodozemac")


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match="node is not installed"):
        require_program("node")


def test_no_test_skips_a_missing_module_by_itself() -> None:
    """`pytest.importorskip` skips under CI too: the E2EE tests passed a CI run without
    vodozemac that way. Optional modules go through `require_module`."""
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if re.search(r"\bimportorskip\(", path.read_text()) and path != Path(__file__).resolve()
    ]
    assert offenders == []


def test_the_e2ee_tests_require_vodozemac() -> None:
    for name in ("test_matrix_e2ee.py", "test_matrix_late_keys.py"):
        source = (TESTS / "wire" / "matrix" / name).read_text()
        assert 'require_module("vodozemac")' in source, name

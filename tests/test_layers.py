"""The dependency direction of DESIGN.md, checked on the source: flows stay pure.

Flows may import the standard library, pydantic, other flows and `gateway.model`; never the
store, the engine, transports or network libraries. That is what keeps each step a pure
function that can be tested, replayed and benchmarked without I/O.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_FLOWS = (
    "gateway.",
    "asyncio",
    "aiosqlite",
    "nio",
    "aiosmtplib",
    "aioimaplib",
    "aiosmtpd",
    "socket",
    "sqlite3",
    "jinja2",
)
ALLOWED_GATEWAY = ("gateway.model",)


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_flows_import_only_the_model_from_the_gateway() -> None:
    offenders = []
    for path in sorted((ROOT / "flows").rglob("*.py")):
        for name in imports(path):
            if name in ALLOWED_GATEWAY:
                continue
            if any(name == f.rstrip(".") or name.startswith(f) for f in FORBIDDEN_IN_FLOWS):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_transports_do_not_import_the_engine_internals() -> None:
    offenders = []
    for path in sorted((ROOT / "gateway" / "transports").glob("*.py")):
        for name in imports(path):
            if name in (
                "gateway.outbox",
                "gateway.routing",
                "gateway.outbound",
                "gateway.service",
                "gateway.cli",
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []

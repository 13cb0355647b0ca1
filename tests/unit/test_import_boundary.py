"""``detectors`` stays pure: no I/O, network, clocks, threads or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import detectors

pytestmark = pytest.mark.unit

PACKAGE = Path(detectors.__file__).parent
FORBIDDEN = {
    "faust", "aiokafka", "clickhouse_connect", "chdb", "socket", "asyncio", "requests", "httpx",
    "time", "os", "pathlib", "subprocess", "threading", "random", "streams",
}
# Seeded generators may use their own random.Random(seed); nothing else may touch random.
ALLOWED = {"_testing.py": {"random"}}
FORBIDDEN_CALLS = {"open", "print", "input", "eval", "exec", "__import__"}
FORBIDDEN_ATTRIBUTES = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
                        ("time", "time"), ("time", "monotonic"), ("time", "perf_counter")}
MODULES = sorted(PACKAGE.glob("*.py"))


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _forbidden_calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"{node.func.id}() at line {node.lineno}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES:
                found.append(f"{node.value.id}.{node.attr} at line {node.lineno}")
    return found


def test_the_package_has_modules_to_check() -> None:
    assert {"engine.py", "score_drift.py", "download_burst.py", "label_shift.py"} <= {m.name for m in MODULES}


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_no_forbidden_imports(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    allowed = ALLOWED.get(module.name, set())
    assert _imported_roots(tree) & (FORBIDDEN - allowed) == set()


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_no_io_or_clock_calls(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    assert _forbidden_calls(tree) == []


def test_the_checker_catches_violations() -> None:
    tree = ast.parse("import os\nfrom time import time\nfrom datetime import datetime\nopen('x')\ndatetime.now()\n")
    assert _imported_roots(tree) & FORBIDDEN == {"os", "time"}
    assert _forbidden_calls(tree) == ["open() at line 4", "datetime.now at line 5"]

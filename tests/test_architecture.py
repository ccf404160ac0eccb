"""The layering of docs/architecture.md, enforced: who may import what, and sizes.

Every module's imports are read from its syntax tree (imports inside functions too):

* ``ledger/`` but ``ledger/store/``: the pure core and the use cases import no web,
  database or CLI framework, and nothing from ``api`` or ``adapters``;
* ``ledger/usecases/``: nothing from ``ledger.store`` (a unit of work is passed in);
* ``adapters/`` (shipped to the centres): nothing from ``api``;
* ``api/http`` and ``api/grpc``: not each other (``api/serve.py`` starts both);
* the ways in and the centre side stay small: no module over 800 lines, no function
  over 80 (the generated protobuf code aside).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_settings",
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "grpc_status",
    "google.protobuf",
    "suanli",
    "typer",
    "rich",
    "uvicorn",
    "httpx",
    "openpyxl",
    "prometheus_client",
)
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80


def modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "_pb2" not in p.name)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                anchor = (package or module_name(path)).split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(folder: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in modules(folder):
        if skip and under(module_name(path), *skip):
            continue
        for name in imports(path):
            if under(name, *forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return sorted(set(found))


def test_the_core_imports_no_framework_and_no_way_in() -> None:
    forbidden = (*FRAMEWORKS, "api", "adapters")
    assert violations("ledger", forbidden, skip=("ledger.store",)) == []


def test_the_use_cases_do_not_reach_the_store() -> None:
    assert violations("ledger/usecases", ("ledger.store",)) == []


def test_the_centre_side_imports_nothing_from_the_service() -> None:
    assert violations("adapters", ("api",)) == []


@pytest.mark.parametrize(("way", "other"), [("api/http", "api.grpc"), ("api/grpc", "api.http")])
def test_http_and_grpc_know_nothing_of_each_other(way: str, other: str) -> None:
    assert violations(way, (other, "api.cli")) == []


def test_the_ways_in_are_made_of_small_pieces() -> None:
    too_long = []
    for folder in ("api", "adapters", "benchmarks", "ledger/usecases"):
        for path in modules(folder):
            text = path.read_text(encoding="utf-8")
            where = path.relative_to(ROOT)
            if text.count("\n") > MAX_MODULE_LINES:
                too_long.append(f"{where}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def test_the_checks_see_imports_inside_functions() -> None:
    """The walk finds late imports too (a check that missed them would pass vacuously)."""
    found = set(imports(ROOT / "api" / "cli" / "service.py"))
    assert "api.bootstrap.open_service" in found and "ledger.fold.apply" in found

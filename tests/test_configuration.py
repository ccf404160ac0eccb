"""docs/configuration.md lists every setting: its tables are the settings classes' fields,
and no code outside the settings reads a ``SUANLI_*`` variable of them by itself."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from adapters.settings import CentreSettings
from api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"


def variables(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def documented() -> set[str]:
    """The variables in the doc's tables (rows that start with a variable)."""
    return set(re.findall(r"^\| `(SUANLI_[A-Z_]+)` \|", DOC.read_text(encoding="utf-8"), re.M))


def test_the_doc_tables_are_the_settings() -> None:
    assert documented() == variables(Settings) | variables(CentreSettings)


def test_each_variable_is_read_in_one_place() -> None:
    """Only the settings classes name their variables; code takes them from the settings."""
    names = variables(Settings) | variables(CentreSettings)
    readers = []
    for folder in ("api", "adapters", "ledger", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for name in names:
                if re.search(rf"environ[^\n]*['\"]{name}['\"]|getenv\(['\"]{name}", text):
                    readers.append(f"{path.relative_to(ROOT)}: {name}")
    assert readers == []

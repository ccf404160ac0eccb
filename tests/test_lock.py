"""The install is the same everywhere: requirements.lock pins every dependency, and the
environment the tests run in is exactly what the lock says (``make`` installs from it)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
_PINNED = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked() -> dict[str, tuple[str, str | None, list[str]]]:
    """name -> (version, marker, hashes) for every requirement in the lock."""
    pins: dict[str, tuple[str, str | None, list[str]]] = {}
    current: str | None = None
    for line in LOCK.read_text().splitlines():
        match = _PINNED.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), match.group(3), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            pins[current][2].append(line.strip().split(":", 1)[1].rstrip(" \\"))
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = [
        *project["project"]["dependencies"],
        *(d for group in project["project"]["optional-dependencies"].values() for d in group),
        *project["build-system"]["requires"],
    ]
    return [Requirement(n) for n in names]


def test_every_declared_dependency_is_pinned_with_hashes() -> None:
    pins = locked()
    assert pins, "requirements.lock holds no pins"
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run make lock"
        version, _, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement} is locked at {version}: run make lock"
        )
    for name, (version, _, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash in requirements.lock"
        assert all(len(h) == 64 for h in hashes)


def test_the_environment_is_the_lock() -> None:
    environment = default_environment()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    for name, (version, marker, _) in locked().items():
        if marker and not Requirement(f"x; {marker}").marker.evaluate(environment):  # type: ignore[union-attr]
            continue
        assert installed.get(name) == version, (
            f"{name} is {installed.get(name)} here but {version} in requirements.lock"
        )


def test_make_lock_writes_what_the_lock_says_it_was_made_with() -> None:
    header = LOCK.read_text().splitlines()[1]
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlock:", 1)[1]
    command = " ".join(recipe.replace("\\\n", " ").split("\n")[1].split())
    assert header.strip("# ").replace("uv pip compile", "$(BIN)/uv pip compile").split() == [
        w for w in command.split() if w != "--quiet"
    ]


def test_the_code_generator_is_pinned() -> None:
    version, _, _ = locked()["grpcio-tools"]
    generated = (ROOT / "protos/suanli/v1/redemption_pb2_grpc.py").read_text()
    assert f"GRPC_GENERATED_VERSION = '{version}'" in generated

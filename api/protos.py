"""Generate the Python code of the ``.proto`` contract, or check that it has not drifted.

    python -m api.protos          regenerate protos/suanli/v1/*_pb2*.py(i) in place
    python -m api.protos --check  exit 1 if the committed files differ from a fresh generation

The generated modules live beside their ``.proto`` files and import as ``suanli.v1.*``
(pyproject maps the package ``suanli`` to ``protos/suanli``). Generation uses protoc from
``grpcio-tools`` and the ``mypy-protobuf`` plugins for the ``.pyi`` stubs, so that the
output depends only on the versions pinned in the dev environment.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import tempfile
from pathlib import Path

from api.errors import ToolError

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = PROTO_ROOT / "suanli" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


class ProtoError(ToolError):
    pass


def proto_files() -> list[Path]:
    return sorted(PACKAGE_DIR.glob("*.proto"))


def _plugin(name: str) -> str:
    """A protoc plugin from this interpreter's environment (the venv), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise ProtoError(f"{name} not found: install the dev extras (mypy-protobuf)")
    return found


def generate(out: Path) -> list[Path]:
    """Run protoc over every .proto into ``out`` (a directory standing for ``protos/``)."""
    from grpc_tools import protoc

    well_known = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    if not sources:
        raise ProtoError(f"no .proto files in {PACKAGE_DIR}")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise ProtoError(f"protoc failed: {' '.join(args[1:])}")
    return sorted(
        p for p in (out / "suanli" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )


def committed() -> dict[str, Path]:
    return {p.name: p for p in PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def check() -> list[str]:
    """Differences between the committed generated files and a fresh generation."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        have = committed()
        for name in sorted(set(fresh) | set(have)):
            if name not in have:
                problems.append(f"{name}: missing (run python -m api.protos)")
            elif name not in fresh:
                problems.append(f"{name}: stale, no .proto generates it")
            else:
                old = have[name].read_text().splitlines(keepends=True)
                new = fresh[name].read_text().splitlines(keepends=True)
                if old != new:
                    diff = "".join(
                        difflib.unified_diff(old, new, f"committed/{name}", f"fresh/{name}", n=1)
                    )
                    problems.append(f"{name}: differs from a fresh generation\n{diff}")
    return problems


def regenerate() -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        for stale in committed().values():
            stale.unlink()
        written = []
        for path in fresh:
            target = PACKAGE_DIR / path.name
            shutil.copyfile(path, target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.protos", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail if the generated code differs from the .proto"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check()
            for problem in problems:
                print(problem, file=sys.stderr)  # noqa: T201
            if problems:
                print("generated code is stale: run python -m api.protos", file=sys.stderr)  # noqa: T201
                return 1
            print(f"generated code matches {len(proto_files())} .proto file(s)")  # noqa: T201
            return 0
        for path in regenerate():
            print(path.relative_to(ROOT))  # noqa: T201
    except ProtoError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

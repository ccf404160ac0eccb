"""Every ``suanli`` command, run with a typical mistake: no traceback, one clear line, and
the exit status docs/cli.md documents (0 ok, 1 refused or a check failed, 2 usage, 3 not
set up or unreachable, 4 internal error).

The commands are found by walking the typer app, so a new command without a mistake in
``MISTAKES`` fails ``test_every_command_has_a_typical_mistake``. Commands run in-process
through ``api.cli.manners.run`` (what the console entry point runs); one test runs the
installed ``suanli`` itself.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import typer.main

from api.cli import app
from api.cli.manners import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    run,
)

SUANLI = str(Path(sys.executable).parent / "suanli")


def commands() -> Iterator[str]:
    """Every visible leaf command's path (``token create``); hidden aliases are skipped."""

    def walk(command: object, path: list[str]) -> Iterator[str]:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            yield " ".join(path)
            return
        for name, sub in subcommands.items():
            if not getattr(sub, "hidden", False):
                yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


@dataclass(frozen=True)
class Mistake:
    args: tuple[str, ...]  # after the command's path; {dev}, {missing}, {prod}, {tmp} filled in
    code: int
    says: str  # a fragment the one-line error (or the verdict) must hold


MISTAKES: dict[str, Mistake] = {
    "serve": Mistake(("--data-dir", "{missing}"), EXIT_UNAVAILABLE, "no data dir at"),
    "init": Mistake(
        ("--data-dir", "{tmp}/new", "--db", "nosuchdb://x"), EXIT_UNAVAILABLE, "database URL"
    ),
    "rebuild": Mistake(("--data-dir", "{missing}"), EXIT_UNAVAILABLE, "no data dir at"),
    "demo": Mistake(("--data-dir", "{prod}"), EXIT_UNAVAILABLE, "not a development data dir"),
    "keys rotate-log": Mistake(("--data-dir", "{missing}"), EXIT_UNAVAILABLE, "suanli init"),
    "token create": Mistake(
        ("--role", "bogus", "--data-dir", "{dev}"), EXIT_USAGE, "admin, reviewer, grantee"
    ),
    "token list": Mistake(("--data-dir", "{missing}"), EXIT_UNAVAILABLE, "no data dir at"),
    "token revoke": Mistake(("not-a-token-id", "--data-dir", "{dev}"), EXIT_FAILED, "no active"),
    "audit verify": Mistake(
        ("--source", "{db}", "--key-file", "{other_key}", "--no-progress"),
        EXIT_FAILED,
        "not the trusted key",
    ),
    "audit export": Mistake(
        ("--source", "{missing}", "{tmp}/export"), EXIT_UNAVAILABLE, "export directory"
    ),
    "audit prove": Mistake(
        ("999999", "-o", "{tmp}/proof", "--source", "{db}"), EXIT_USAGE, "not below the tree size"
    ),
    "audit check-proof": Mistake(
        ("{tmp}/no-proof", "{tmp}/no-entry", "--key-file", "{other_key}"),
        EXIT_USAGE,
        "No such file",
    ),
    "policy simulate": Mistake(("--policy", "{tmp}/nope.json"), EXIT_USAGE, "nope.json"),
    "policy show": Mistake(("--policy", "{tmp}/nope.json"), EXIT_USAGE, "nope.json"),
    "policy current": Mistake(("--data-dir", "{missing}"), EXIT_UNAVAILABLE, "no data dir at"),
    "policy diff": Mistake(("abcdef0123", "--data-dir", "{dev}"), EXIT_USAGE, "not a published"),
    "policy publish": Mistake(
        ("{tmp}/in-force.json", "--data-dir", "{dev}"), EXIT_FAILED, "POLICY_EXISTS"
    ),
    "voucher verify": Mistake(
        ("{tmp}/no-voucher", "--jwks", "{tmp}/no-jwks"), EXIT_USAGE, "neither a voucher"
    ),
    "centre preview": Mistake((), EXIT_USAGE, "give exactly one of"),
    "centre run": Mistake(("--source", "sacct:{tmp}/x"), EXIT_USAGE, "--mapping"),
    "centre reconcile": Mistake(("--no-such-option",), EXIT_USAGE, "No such option"),
    "centre check-log": Mistake(("--log-key", "x"), EXIT_USAGE, "Missing option '--ledger'"),
    "witness serve": Mistake(("--data-dir", "{tmp}/witness"), EXIT_USAGE, "at least one log"),
    "witness key": Mistake(("--data-dir", "{tmp}/no-witness"), EXIT_USAGE, "no witness key"),
}


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A development and a production data dir, another log's key, a policy file."""
    tmp = tmp_path_factory.mktemp("manners")
    dev, prod, other = tmp / "dev", tmp / "prod", tmp / "other"
    for argv in (
        ["init", "--dev", "--data-dir", str(dev)],
        ["init", "--data-dir", str(prod)],
        ["init", "--data-dir", str(other)],
    ):
        assert run(app, argv) == EXIT_OK
    from api.keystore import load_service_keys

    other_key = tmp / "other.key"
    other_key.write_text(
        "# another log's key\n"
        + load_service_keys(other, "suanli.localhost/chengdu-2023").log.verifier.vkey
        + "\n"
    )
    from ledger.policy import Policy

    (tmp / "in-force.json").write_text(json.dumps(Policy.load().to_json(), ensure_ascii=False))
    return {
        "tmp": str(tmp),
        "dev": str(dev),
        "prod": str(prod),
        "missing": str(tmp / "missing"),
        "db": f"sqlite:///{dev / 'ledger.db'}",
        "other_key": str(other_key),
    }


def test_every_command_has_a_typical_mistake() -> None:
    found = set(commands())
    assert found == set(MISTAKES), f"new: {found - set(MISTAKES)}; gone: {set(MISTAKES) - found}"


@pytest.mark.parametrize("path", sorted(MISTAKES))
def test_a_typical_mistake_gets_one_line_and_the_documented_exit_status(
    path: str, places: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    mistake = MISTAKES[path]
    argv = [*path.split(), *(a.format(**places) for a in mistake.args)]
    code = run(app, argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == mistake.code, f"{argv}: exit {code}\n{out}{err}"
    assert mistake.says in out + err, out + err
    errors = [line for line in err.splitlines() if line.startswith("suanli: error:")]
    assert len(errors) <= 1, err
    if code != EXIT_FAILED:  # a failed check answers with its verdict; the rest say why
        assert len(errors) == 1, err


@pytest.mark.parametrize("path", sorted(MISTAKES))
def test_every_command_has_help_with_dash_h(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(app, [*path.split(), "-h"]) == EXIT_OK
    assert "Usage:" in capsys.readouterr().out


def test_an_unknown_option_is_a_usage_error_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for path in commands():
        assert run(app, [*path.split(), "--no-such-option"]) == EXIT_USAGE, path
        err = capsys.readouterr().err
        assert "No such option" in err and f"see 'suanli {path} --help'" in err, err


def test_commands_name_their_data_dir_and_never_create_one(
    places: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(app, ["token", "list", "--data-dir", places["dev"]]) == EXIT_OK
    err = capsys.readouterr().err
    assert f"suanli: data dir {places['dev']}, database sqlite:///" in err
    assert run(app, ["token", "list", "--data-dir", places["missing"]]) == EXIT_UNAVAILABLE
    assert not Path(places["missing"]).exists()


def test_a_port_in_use_is_one_line(places: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [SUANLI, "serve", "--data-dir", places["dev"], "--http", f"127.0.0.1:{port}",
             "--grpc", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.rstrip()
        .splitlines()[-1]
        .startswith(f"suanli: error: the service did not start on 127.0.0.1:{port}")
    )


def test_the_installed_command(places: dict[str, str]) -> None:
    version = subprocess.run([SUANLI, "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("suanli ")
    bad = subprocess.run(
        [SUANLI, "token", "create", "--role", "grantee", "--entity", "91510100MA61R0JK4T",
         "--data-dir", places["dev"]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == EXIT_USAGE and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == [
        "suanli: error: 统一社会信用代码 '91510100MA61R0JK4T': character 18 (the check "
        "character) is 'T'; for the first 17 characters it should be '1' [INVALID_USCC]"
    ]


def test_debug_shows_the_traceback_of_an_internal_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (any exception that is not one of ours) is one line and exit 4; --debug (or
    SUANLI_DEBUG=1) lets the traceback through. A tiny app of the test's own has the bug."""
    buggy = typer.Typer()

    @buggy.command()
    def divide(by: int) -> None:
        typer.echo(str(1 // by))

    @buggy.command()
    def other() -> None:
        """A second command, so that the app is a group as suanli is."""

    assert run(buggy, ["divide", "0"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "suanli: error: internal error (ZeroDivisionError: integer division or modulo by "
        "zero) — this is a bug; rerun with --debug for the traceback"
    ]
    with pytest.raises(ZeroDivisionError):
        run(buggy, ["divide", "0", "--debug"])
    monkeypatch.setenv("SUANLI_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run(buggy, ["divide", "0"])


def test_help_uses_the_terminals_width(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = (
        "Print a policy FILE's version and programmes (default: the packaged one; the "
        "version in force in the ledger is `suanli policy current`)."
    )
    monkeypatch.setenv("COLUMNS", "160")
    assert run(app, ["policy", "--help"]) == EXIT_OK
    wide = capsys.readouterr().out
    assert summary in wide  # one line, not cut at 80 columns nor at the source's wraps
    monkeypatch.setenv("COLUMNS", "60")
    assert run(app, ["policy", "-h"]) == EXIT_OK
    narrow = capsys.readouterr().out
    assert summary not in narrow and max(len(line) for line in narrow.splitlines()) <= 60


def test_a_token_for_an_entity_the_log_does_not_know_says_so(
    places: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "create", "--role", "grantee", "--entity", "91510100MA61R0JK41"]
    assert run(app, [*argv, "--data-dir", places["dev"]]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.startswith("sl_") and len(out.splitlines()) == 1  # the token alone on stdout
    assert "no entity with 统一社会信用代码 91510100MA61R0JK41 is registered" in err

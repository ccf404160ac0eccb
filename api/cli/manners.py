"""How the ``suanli`` command behaves when something goes wrong: one line, a hint, and a
documented exit status (docs/cli.md has the table); a traceback only with ``--debug``.

Every command is run through :func:`run`, which turns what a command raises into that
line: the ledger's refusals (``LedgerError``), the tools' own errors (``ToolError``),
usage mistakes caught by click, and the usual troubles of the outside world (a port in
use, a file that cannot be read, a server or database that does not answer). Anything
else is a bug: it is reported as one, with exit status 4 and a hint to rerun with
``--debug`` (or ``SUANLI_DEBUG=1``) for the traceback.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click import exceptions as click

from api.errors import ToolError
from ledger.errors import LedgerError

EXIT_OK = 0
EXIT_FAILED = 1  # refused by the ledger, or a check (audit, proof, voucher) failed
EXIT_USAGE = 2  # a bad option, argument or input file: nothing was done
EXIT_UNAVAILABLE = 3  # not set up or not reachable: no data dir, server, database, port
EXIT_INTERNAL = 4  # a bug: rerun with --debug for the traceback
EXIT_INTERRUPTED = 130  # Ctrl-C

DEBUG_FLAG = "--debug"
DEBUG_ENV = "SUANLI_DEBUG"

# A ledger refusal's kind -> exit status: what the caller sent is malformed (usage), or the
# rules refused it (failed), or the ledger itself is in trouble (internal).
_LEDGER_EXIT = {
    "invalid": EXIT_USAGE,
    "internal": EXIT_INTERNAL,
    "data_loss": EXIT_INTERNAL,
}


class NotSetUp(ToolError):
    """The command needs something that is not there yet (a data dir, a key file)."""

    exit_code = EXIT_UNAVAILABLE


class Unreachable(ToolError):
    """A server or database the command needs does not answer."""

    exit_code = EXIT_UNAVAILABLE


def context_settings() -> dict[str, Any]:
    """``-h`` as well as ``--help``, and help as wide as the terminal (click inherits these
    from the root context into every subcommand)."""
    return {
        "help_option_names": ["-h", "--help"],
        "max_content_width": shutil.get_terminal_size().columns,
    }


def tidy_help(command: Any) -> None:
    """Each command's line in its group's list: the first paragraph of its docstring as
    one line, so that it flows to the terminal's width instead of the source's."""
    help_text = getattr(command, "help", None)
    if help_text and not getattr(command, "short_help", None):
        command.short_help = " ".join(help_text.strip().split("\n\n")[0].split())
    for sub in (getattr(command, "commands", None) or {}).values():
        tidy_help(sub)


def say_error(message: str, hint: str | None = None) -> None:
    """The one line an error gets on stderr (and its hint after a dash)."""
    line = f"suanli: error: {' '.join(message.split())}"
    if hint:
        line += f" — {hint}"
    typer.echo(line, err=True)


def _command_path(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    return str(ctx.command_path) if ctx is not None else "suanli"


def _outside_world(exc: BaseException) -> tuple[str, str] | None:
    """(message, hint) for the outside world's usual troubles, or None if it is not one."""
    import httpx
    import sqlalchemy.exc

    if isinstance(exc, httpx.TransportError):
        url = getattr(getattr(exc, "request", None), "url", None) if _has_request(exc) else None
        where = f" {url}" if url is not None else ""
        return (
            f"cannot reach{where}: {exc or type(exc).__name__}",
            "is the service running and the address right?",
        )
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        reason = str(exc.orig or exc).strip().splitlines()[0]
        return f"the database does not answer: {reason}", "check --db / SUANLI_DB"
    if isinstance(exc, sqlalchemy.exc.ArgumentError):
        return f"bad database URL: {exc}", "e.g. postgresql+psycopg://user@host/db"
    if isinstance(exc, OSError):
        import errno

        if exc.errno == errno.EADDRINUSE:
            return f"address already in use: {exc.strerror}", "another service holds the port"
        name = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{name}", "check the path and its permissions"
    return None


def _has_request(exc: BaseException) -> bool:
    try:
        getattr(exc, "request")  # noqa: B009 (httpx raises RuntimeError when unset)
    except RuntimeError:
        return False
    return True


def run(app: typer.Typer, argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    command = typer.main.get_command(app)
    tidy_help(command)
    try:
        # Not standalone: an Exit comes back as its status, everything else is raised here.
        status = command.main(args, prog_name="suanli", standalone_mode=False)
    except click.NoArgsIsHelpError as bare:  # a group called without a command: its help
        bare.show()
        return EXIT_USAGE
    except click.ClickException as exc:  # usage: a missing option, a bad value
        hint = f"see '{_command_path(exc)} --help'"
        say_error(exc.format_message(), hint)
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("suanli: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        return _report(exc)
    return status if isinstance(status, int) else EXIT_OK


def _report(exc: Exception) -> int:
    """Say what went wrong in one line; the exit status it gets."""
    if isinstance(exc, LedgerError):
        say_error(f"{exc.message} [{exc.reason}]")
        return _LEDGER_EXIT.get(exc.kind, EXIT_FAILED)
    if isinstance(exc, ToolError):
        say_error(str(exc), getattr(exc, "hint", None))
        code: int = getattr(exc, "exit_code", EXIT_FAILED)
        return code
    outside = _outside_world(exc)
    if outside is not None:
        say_error(*outside)
        return EXIT_UNAVAILABLE
    say_error(
        f"internal error ({type(exc).__name__}: {exc})",
        f"this is a bug; rerun with {DEBUG_FLAG} for the traceback",
    )
    return EXIT_INTERNAL

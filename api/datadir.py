"""The data dir: who may create one, and whether it is a development one.

Only ``suanli serve`` and ``suanli init`` create a data dir (:func:`create_data_dir`);
every other command on a missing one stops (:func:`require_data_dir`), so that a command
run in the wrong directory never starts a new, empty ledger beside the real one.

A development data dir holds the file ``DEVELOPMENT`` (:data:`DEV_MARKER`): written by
``suanli init --dev`` and by the first ``suanli serve`` on the default ``./suanli-data``
(what ``make run`` uses). ``suanli demo`` publishes a moved round into the log and runs
only on such a data dir.
"""

from __future__ import annotations

from pathlib import Path

from api.errors import ToolError
from api.settings import Settings

DEV_MARKER = "DEVELOPMENT"
EXIT_UNAVAILABLE = 3  # docs/cli.md: not set up or not reachable

_MARKER_TEXT = (
    "This data dir is a development one: `suanli demo` may publish demonstration rounds\n"
    "into its log. Never put this file in a production data dir.\n"
)


class DataDirError(ToolError):
    """The data dir is missing, or is not the kind the command needs."""

    exit_code = EXIT_UNAVAILABLE


def data_dir_given(settings: Settings) -> bool:
    """Whether the data dir was chosen (``--data-dir`` or ``SUANLI_DATA_DIR``) rather than
    left at the default ``./suanli-data``."""
    return "data_dir" in settings.model_fields_set


def is_development(data_dir: Path) -> bool:
    return (data_dir / DEV_MARKER).is_file()


def create_data_dir(settings: Settings, *, development: bool) -> bool:
    """Create the data dir if it is missing (owner-only), marking it as a development one
    when asked; whether it was created. An existing data dir is marked only if it is new
    to the marker and asked for (``init --dev`` on a dir ``init`` made)."""
    data_dir = settings.data_dir
    created = not data_dir.exists()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if development and not is_development(data_dir):
        (data_dir / DEV_MARKER).write_text(_MARKER_TEXT, "utf-8")
    return created


def require_data_dir(settings: Settings) -> None:
    """Stop unless the data dir exists: only ``serve`` and ``init`` create one."""
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise DataDirError(
            f"no data dir at {data_dir.resolve()}",
            hint="run in the service's directory, give --data-dir or SUANLI_DATA_DIR, "
            "or create one with 'suanli init' (or 'suanli init --dev')",
        )


def require_development(settings: Settings) -> None:
    """Stop unless the data dir is marked as a development one."""
    require_data_dir(settings)
    if not is_development(settings.data_dir):
        raise DataDirError(
            f"{settings.data_dir.resolve()} is not a development data dir "
            f"(it has no {DEV_MARKER} file)",
            hint="the demo publishes a moved round into the log; run it on a dir made by "
            "'suanli init --dev' or by 'make run'",
        )


def database_text(settings: Settings) -> str:
    """The database URL to show: the password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = settings.database_url()
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url

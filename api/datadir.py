"""The data dir: who may create one, what kind it is, and where its gRPC TLS material
comes from.

Only ``suanli serve`` and ``suanli init`` create a data dir; every other command on a
missing one stops (:func:`require_data_dir`), so that a command run in the wrong directory
never starts a new, empty ledger beside the real one.

``suanli init`` marks a data dir ``production`` or ``development`` (the file ``MODE`` in it).
A development data dir gets development keys for the two centres and a development PKI
(``api.devpki``), made on demand, and ``suanli demo`` may publish demonstration rounds into
its log. A production data dir gets neither: the centres bring their own keys (``suanli
centres add``), and the server's certificate, key and the CA of the centres' client
certificates come from files the bureau's own CA issued (``--tls-cert``, ``--tls-key``,
``--client-ca`` or ``SUANLI_TLS_*``); ``serve`` refuses to start without them. A data dir
without a mark (a new one ``make run`` makes, or one an earlier version made) is a
development one, and the first ``suanli serve`` marks it so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from api.devpki import TlsFiles, ensure_dev_pki, server_files
from api.errors import ConfigurationError
from api.settings import Settings

Mode = Literal["production", "development"]
MODE_FILE = "MODE"
MODES: tuple[Mode, ...] = ("production", "development")


EXIT_UNAVAILABLE = 3  # docs/cli.md: not set up or not reachable


class DataDirError(ConfigurationError):
    """The data dir is missing, is not the kind the command needs, or its TLS settings do
    not allow what was asked."""

    exit_code = EXIT_UNAVAILABLE


def mode_of(data_dir: Path) -> Mode:
    path = data_dir / MODE_FILE
    if not path.exists():
        return "development"
    text = path.read_text(encoding="utf-8").strip()
    for mode in MODES:
        if text == mode:
            return mode
    raise DataDirError(f"{path} says {text!r}; it must say production or development")


def mark(data_dir: Path, mode: Mode) -> None:
    """Mark ``data_dir`` (made if missing, 0700); a production data dir stays production."""
    path = data_dir / MODE_FILE
    if path.exists() and mode_of(data_dir) != mode:
        raise DataDirError(
            f"{data_dir} is already a {mode_of(data_dir)} data dir; make a new one for {mode}"
        )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(mode + "\n", encoding="utf-8")


def settle_mode(data_dir: Path) -> tuple[Mode, bool]:
    """The data dir's mode, marking an unmarked one ``development`` (what it has always
    been); and whether it was marked just now."""
    if (data_dir / MODE_FILE).exists():
        return mode_of(data_dir), False
    mark(data_dir, "development")
    return "development", True


def check_can_become(data_dir: Path, mode: Mode) -> None:
    """Refuse to make a production data dir of one that ``serve`` or an earlier version
    already set up, unmarked, for development (it holds development centre keys)."""
    unmarked = not (data_dir / MODE_FILE).exists()
    if mode == "production" and unmarked and (data_dir / "keys" / "log.key").exists():
        raise DataDirError(
            f"{data_dir} already holds keys of a development data dir; "
            "make a production one in a new directory"
        )


def data_dir_given(settings: Settings) -> bool:
    """Whether the data dir was chosen (``--data-dir`` or ``SUANLI_DATA_DIR``) rather than
    left at the default ``./suanli-data``."""
    return "data_dir" in settings.model_fields_set


def is_development(data_dir: Path) -> bool:
    return data_dir.is_dir() and mode_of(data_dir) == "development"


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
    """Stop unless the data dir is a development one."""
    require_data_dir(settings)
    if not is_development(settings.data_dir):
        raise DataDirError(
            f"{settings.data_dir.resolve()} is not a development data dir "
            f"(it is a {mode_of(settings.data_dir)} one)",
            hint="the demo publishes a moved round into the log; run it on a dir made by "
            "'suanli init --dev' or by 'make run'",
        )


TLS_OPTIONS = {"tls_cert": "--tls-cert", "tls_key": "--tls-key", "client_ca": "--client-ca"}


def server_tls(settings: Settings) -> tuple[TlsFiles, tuple[str, ...]]:
    """The gRPC server's TLS files, and what development material was made for them.

    All three of ``tls_cert``, ``tls_key`` and ``client_ca`` given: those files (each must
    be readable). None given: in a development data dir, the development PKI (made if
    missing); in a production data dir, a refusal. Some given: a refusal naming the rest.
    """
    given = {name: getattr(settings, name) for name in TLS_OPTIONS}
    missing = [TLS_OPTIONS[name] for name, path in given.items() if path is None]
    if not missing:
        for name, path in given.items():
            if not Path(path).is_file():
                raise DataDirError(f"{TLS_OPTIONS[name]} {path}: no such file")
        files = TlsFiles(ca=given["client_ca"], cert=given["tls_cert"], key=given["tls_key"])
        return files, ()
    if len(missing) < len(TLS_OPTIONS):
        raise DataDirError(f"TLS needs all three files; missing {', '.join(missing)}")
    if mode_of(settings.data_dir) == "production":
        raise DataDirError(
            f"{settings.data_dir} is a production data dir: give the gRPC server's certificate, "
            "key and the centres' client CA (--tls-cert, --tls-key, --client-ca, or "
            "SUANLI_TLS_CERT, SUANLI_TLS_KEY, SUANLI_CLIENT_CA)"
        )
    created = ensure_dev_pki(settings.data_dir).created
    return server_files(settings.data_dir), created

"""``suanli centres``: the bureau's side of onboarding, rotating and retiring a compute
centre (the centre operator's own commands are ``suanli centre run|preview|reconcile``).

A centre is two things in the log: the centre itself with its rate cards and the
programmes that accept it (a policy version, ``--policy``), and its Ed25519 signing key (a
``key.register`` entry). Its gRPC identity is the URI SAN ``suanli:centre:<id>`` of a
client certificate issued by the CA the server trusts (``--client-ca``). In a production
data dir the centre makes its own signing key (``suanli centres keygen`` on its machine)
and hands over only the verifier key; in a development data dir this command makes the key
and a development client certificate in ``<data dir>/centres/<id>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.options import (
    DataDir,
    Db,
    command_group,
    open_existing,
    require_existing,
    settings_from,
    tool_errors,
)
from api.errors import ToolError

app = command_group("centres", "The bureau's side: add, rotate, retire and list centres.")

Centre = Annotated[str, typer.Argument(help="the centre's id, e.g. wh-icc")]
VKey = Annotated[
    str | None,
    typer.Option("--vkey", help="the centre's verifier key (C2SP vkey; public, not secret)"),
]
PolicyFile = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help="a policy version naming the centre, its rate card and the programmes "
        "that accept it (published first)",
        exists=True,
        dir_okay=False,
    ),
]
ProviderFile = Annotated[
    Path | None,
    typer.Option(
        "--provider",
        help="a suanli-provider/v1 file (name, kind, first rate card): registers the centre "
        "as data, for the rounds that accept any registered provider (not with --policy)",
        exists=True,
        dir_okay=False,
    ),
]


class CentreError(ToolError):
    """What ``suanli centres`` refuses before writing anything."""

    exit_code = 2  # docs/cli.md: what was asked cannot be done as given


def _fail_ledger(error: Exception) -> typer.Exit:
    from api.cli.manners import say_error

    say_error(str(error))
    return typer.Exit(2)


def _dev_signing_key(data_dir: Path, centre: str, vkey: str | None, *, rotate: bool) -> str:
    """The verifier key to register: ``vkey``, or in a development data dir a new key
    kept in ``centres/<id>/`` (on rotation beside the old one until the switch is
    committed). A production data dir never holds a centre's private key."""
    from api.datadir import mode_of
    from api.keystore import centre_key_path
    from ledger.keys import Signer

    if vkey is not None:
        return vkey
    if mode_of(data_dir) == "production":
        raise CentreError(
            "a production data dir holds no centre's private key: give --vkey, the verifier "
            "key the centre made with `suanli centres keygen`"
        )
    path = centre_key_path(data_dir, centre)
    if path.exists() and not rotate:
        return Signer.parse(path.read_text().strip()).verifier.vkey
    staged = path.with_name("signing.key.next")
    if not staged.exists():
        _write_private(staged, Signer.generate(centre).skey + "\n")
    return Signer.parse(staged.read_text().strip()).verifier.vkey


def _install_dev_key(data_dir: Path, centre: str) -> None:
    """After the commit: the staged development key becomes the centre's signing key."""
    from api.keystore import centre_key_path

    path = centre_key_path(data_dir, centre)
    staged = path.with_name("signing.key.next")
    if staged.exists():
        staged.replace(path)


def _write_private(path: Path, text: str) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _operator_notes(settings: Any, centre: str, key_id: str, dev_files: Any) -> None:
    """What the centre's operator needs, printed once the entries are committed."""
    from api.devpki import centre_uri

    typer.echo(f"centre:        {centre}")
    typer.echo(f"signing key:   {key_id} (registered; it signs claims from the next entry on)")
    typer.echo(f"certificate:   a client certificate with URI SAN {centre_uri(centre)}")
    typer.echo("               (extended key usage clientAuth) from the CA given to --client-ca")
    typer.echo(f"ledger gRPC:   {settings.grpc} (mutual TLS; trust the CA of its certificate)")
    if dev_files is not None:
        typer.echo(f"development:   {dev_files.cert.parent}/ (client.pem, client.key, ca.pem,")
        typer.echo("               signing.key): hand this directory to the centre's agent")
    typer.echo(f"the agent:     suanli centre run --centre {centre} ... (docs/centre.md)")


def _provider(path: Path, centre: str) -> Any:
    """The provider file, which must name the centre being added."""
    from ledger.policy_read import load_provider

    spec = load_provider(path)
    if spec.centre.id != centre:
        raise CentreError(f"{path} describes centre {spec.centre.id}, not {centre}")
    return spec


@app.command("add")
def add(
    centre: Centre,
    vkey: VKey = None,
    policy: PolicyFile = None,
    provider: ProviderFile = None,
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Register a centre's signing key (and, with --policy, the policy version that brings
    the centre, its rate card and the programmes accepting it; or, with --provider, the
    centre and its rate card as data); print what its operator needs."""
    from api.bootstrap import open_service
    from api.datadir import mode_of
    from api.devpki import ensure_dev_pki
    from ledger.errors import LedgerError
    from ledger.keys import Verifier
    from ledger.policy import Policy
    from ledger.usecases.commands.centres import add_centre, register_provider

    with tool_errors():
        settings = require_existing(settings_from(data_dir, db))
        dev = mode_of(settings.data_dir) == "development"
        if policy is not None and provider is not None:
            raise CentreError("give --policy or --provider, not both")
        try:
            spec = _provider(provider, centre) if provider is not None else None
            key = _dev_signing_key(settings.data_dir, centre, vkey, rotate=False)
            document = Policy.load(policy) if policy is not None else None
            with open_service(settings) as service:
                if spec is not None:
                    done = service.write(register_provider, provider=spec, vkey=key)
                else:
                    done = service.write(add_centre, centre=centre, vkey=key, policy=document)
        except LedgerError as error:
            raise _fail_ledger(error) from None
        if done.round is not None:
            new = ", ".join(done.round.centres + done.round.rate_cards) or "nothing new"
            typer.echo(f"policy:        published at {done.round.entry.index} ({new})")
        assert done.registered is not None
        _install_dev_key(settings.data_dir, centre)
        files = None
        if dev:
            files = ensure_dev_pki(settings.data_dir, extra=[centre]).centres[centre]
        key_id = Verifier.parse(done.registered.entry.body["vkey"]).key_id
        _operator_notes(settings, centre, key_id, files)
        typer.echo(f"log index:     {done.registered.index}")


@app.command("rotate-key")
def rotate_key(centre: Centre, vkey: VKey = None, data_dir: DataDir = None, db: Db = None) -> None:
    """Register a new signing key for the centre and retire its keys in force, in one
    commit (claims signed with the old key are refused from then on)."""
    from api.bootstrap import open_service
    from ledger.errors import LedgerError
    from ledger.usecases.commands.centres import rotate_centre_key

    with tool_errors():
        settings = require_existing(settings_from(data_dir, db))
        key = _dev_signing_key(settings.data_dir, centre, vkey, rotate=True)
        try:
            with open_service(settings) as service:
                done = service.write(rotate_centre_key, centre=centre, vkey=key)
        except LedgerError as error:
            raise _fail_ledger(error) from None
        _install_dev_key(settings.data_dir, centre)
        assert done.registered is not None
        typer.echo(f"centre {centre}: key registered at index {done.registered.index}")
        for retired in done.retired:
            typer.echo(f"  retired {retired.entry.body['key']} at index {retired.index}")


@app.command("retire")
def retire(centre: Centre, data_dir: DataDir = None, db: Db = None) -> None:
    """Retire every signing key of the centre: it can redeem nothing from then on (the
    centre and its history stay in the log)."""
    from ledger.errors import LedgerError
    from ledger.usecases.commands.centres import retire_centre

    with tool_errors():
        try:
            with open_existing(settings_from(data_dir, db)) as service:
                done = service.write(retire_centre, centre=centre)
        except LedgerError as error:
            raise _fail_ledger(error) from None
        for retired in done.retired:
            typer.echo(f"centre {centre}: retired {retired.entry.body['key']} at {retired.index}")


@app.command("list")
def list_(
    after: Annotated[str, typer.Option(help="cursor: list centres after this id")] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """The centres in the log with their keys, a page at a time (``--after`` the last id)."""
    from ledger.usecases.views.centres import centre_roster

    with (
        tool_errors(),
        open_existing(settings_from(data_dir, db)) as service,
        service.reading() as snapshot,
    ):
        page = centre_roster(snapshot.state, after=after, limit=limit)
    if as_json:
        typer.echo(json.dumps(page, ensure_ascii=False, indent=2))
        return
    for row in page["centres"]:
        active = [k["key_id"] for k in row["keys"] if k["active"]]
        if active:
            state = f"active key {', '.join(active)}"
        else:
            state = "retired (no active key)" if row["keys"] else "no key registered yet"
        typer.echo(f"{row['centre']:<12} {row['kind']:<10} {state}  {row['name']}")
    if page["next"]:
        typer.echo(f"more: --after {page['next']}")


@app.command("keygen")
def keygen(
    centre: Centre,
    out: Annotated[
        Path, typer.Option("--out", help="where to write the private key (created 0600)")
    ],
) -> None:
    """Make a centre's signing key on the centre's own machine; print the verifier key
    to hand to the bureau (the private key never leaves the file)."""
    from ledger.keys import Signer

    with tool_errors():
        if out.exists():
            raise CentreError(f"{out} exists; a signing key is never overwritten")
        signer = Signer.generate(centre)
        _write_private(out, signer.skey + "\n")
    typer.echo(signer.verifier.vkey)

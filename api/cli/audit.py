"""``suanli audit``: verify a whole log offline, export it, prove and check one entry.

Exit status: 0 when every check holds, 1 when a check fails (the log, a checkpoint or a
proof is wrong), 2 on usage errors and when the source cannot be read at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.log_sources import DirSource, Source, SourceError, open_source, peek_checkpoint
from api.cli.options import command_group
from ledger.checkpoint import CosignatureVerifier
from ledger.errors import LedgerError
from ledger.keys import Verifier
from ledger.tlogpolicy import Policy, k_of_n, parse_policy, require_quorum

if TYPE_CHECKING:
    from ledger.audit import Evidence

app = command_group(
    "audit", "Verify the signed log offline (tiles, checkpoints, signatures, the fold)."
)

EXIT_FAILED = 1
EXIT_USAGE = 2


def _verifier(vkey: str) -> Verifier:
    try:
        return Verifier.parse(vkey.strip())
    except LedgerError as exc:
        raise typer.BadParameter(exc.message, param_hint="--key") from exc


def _error(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


@contextmanager
def _progress(enabled: bool | None, what: str) -> Iterator[Callable[[int, int], None]]:
    """``tick(done, total)`` drawing a rich progress bar on stderr when stderr is a terminal
    (or when forced with ``--progress``); a no-op otherwise."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield lambda _done, _total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _open(spec: str, token: str | None = None) -> Source:
    try:
        return open_source(spec, token)
    except SourceError as exc:
        raise _error(str(exc)) from exc


Key = Annotated[
    str, typer.Option("--key", help="the log's GENESIS verifier key (name+hex8+base64)")
]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="progress on stderr (default: if a TTY)"),
]


WitnessOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        help="a witness's cosignature key (type 0x04 vkey, `suanli witness key`); repeatable",
    ),
]
QuorumOpt = Annotated[
    int | None, typer.Option(min=0, help="cosignatures required (default: every --witness)")
]
WitnessPolicyOpt = Annotated[
    Path | None,
    typer.Option(help="a c2sp.org/tlog-policy file naming the witnesses and the quorum"),
]


def _witness_policy(
    witness: list[str] | None, quorum: int | None, policy_file: Path | None
) -> Policy | None:
    """The verifier's witness policy from ``--witness``/``--quorum`` or ``--witness-policy``."""
    if policy_file is not None:
        if witness or quorum is not None:
            raise _error("give --witness/--quorum or --witness-policy, not both")
        try:
            return parse_policy(policy_file.read_bytes())
        except OSError as exc:
            raise _error(f"--witness-policy {policy_file}: {exc.strerror or exc}") from exc
        except LedgerError as exc:
            raise _error(f"--witness-policy {policy_file}: {exc.message}") from exc
    if not witness:
        if quorum is not None:
            raise _error("--quorum needs the witnesses' keys (--witness VKEY, repeatable)")
        return None
    try:
        keys = [CosignatureVerifier.parse(vkey) for vkey in witness]
        return k_of_n(keys, len(keys) if quorum is None else quorum)
    except LedgerError as exc:
        raise _error(f"--witness: {exc.message}") from exc


def _check_witnesses(note: str, policy: Policy | None) -> str | None:
    """The line saying who cosigned the checkpoint; exits FAIL when the quorum is not met."""
    if policy is None:
        return None
    try:
        names = require_quorum(note, policy)
    except LedgerError as exc:
        typer.echo(f"FAIL (witnesses): {exc.message}")
        raise typer.Exit(EXIT_FAILED) from exc
    size = peek_checkpoint(note).size
    return (
        f"witnesses: size {size} cosigned by {', '.join(sorted(names)) or 'none'} "
        f"(quorum {policy.quorum} met)"
    )


def _projection_within(src: Source, size: int) -> tuple[int, dict[str, int]] | None:
    """The source's stored projection, when it describes a tree this audit reads."""
    stored = src.projection()
    return stored if stored is not None and 0 < stored[0] <= size else None


def _load_pin(pin: Path | None) -> tuple[str | None, Evidence | None]:
    """The checkpoint saved earlier (``--pin``) and, from an earlier export, its evidence."""
    from ledger.audit import Evidence

    if pin is None:
        return None, None
    if pin.is_file():
        return pin.read_text("utf-8"), None
    if not pin.is_dir():
        raise _error(f"--pin {pin}: no such file or directory")
    try:
        with DirSource(pin) as earlier:
            pinned = earlier.checkpoint()
            pin_size = peek_checkpoint(pinned).size
            # Read now: the earlier export is small next to the log and stays put.
            saved = list(earlier.evidence(pin_size).checkpoints())
            hashes = earlier.leaf_hashes(pin_size)
            return pinned, Evidence(lambda: iter(saved), hashes)
    except SourceError as exc:
        raise _error(f"--pin {pin}: {exc}") from exc


@app.command()
def verify(
    source: Annotated[str, typer.Argument(help="http(s):// server URL, export dir or db URL")],
    key: Key,
    pin: Annotated[
        Path | None,
        typer.Option(help="a checkpoint saved earlier (a note file, or an earlier export dir)"),
    ] = None,
    origin: Annotated[str | None, typer.Option(help="expected checkpoint origin")] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="signature worker processes (default: all cores)")
    ] = None,
    progress: ProgressOpt = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="SUANLI_AUDIT_TOKEN",
            help="an auditor's token: read the disclosures too and replay every rule",
        ),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="audit without disclosures, as anyone can")
    ] = False,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = None,
    witness_policy: WitnessPolicyOpt = None,
) -> None:
    """Fetch every entry, rebuild the tree, check checkpoints, signatures and the fold.

    With --witness (and --quorum) or --witness-policy, the checkpoint audited must carry
    enough witnesses' cosignatures: a log cannot show this auditor a history it did not
    show its witnesses.

    With the disclosures (a database, an export made with them, or a server with --token),
    the audit is full: every entry is replayed through the fold and every opening checked
    against its digest. Without, it is public: what anyone can check, and it says what it
    could not."""
    from ledger.audit import verify_log

    trusted = _verifier(key)
    pinned, pinned_evidence = _load_pin(pin)
    witnesses = _witness_policy(witness, quorum, witness_policy)
    with _open(source, token) as src:
        src.witness_policy = witnesses
        try:
            note = src.checkpoint()
            try:
                size = peek_checkpoint(note).size
            except SourceError as exc:  # the log's own head is broken: a failed check
                typer.echo(f"FAIL (checkpoint): {exc} (the latest, from {src.name})")
                raise typer.Exit(EXIT_FAILED) from exc
            cosigned = _check_witnesses(note, witnesses)
            with _progress(progress, "verifying entries") as tick:
                report = verify_log(
                    src.entries(size),
                    note,
                    trusted,
                    origin=origin,
                    pinned=pinned,
                    evidence=src.evidence(size),
                    pinned_evidence=pinned_evidence,
                    jobs=jobs,
                    progress=lambda done: tick(done, size),
                    projection=None if public else _projection_within(src, size),
                    snapshots=[] if public else src.snapshots(),
                    disclosures=None if public else src.disclosures(),
                )
        except SourceError as exc:
            raise _error(str(exc)) from exc
    for line in report.verdict():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
    if cosigned is not None:
        typer.echo(cosigned)


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="http(s):// server URL, export dir or db URL")],
    directory: Annotated[Path, typer.Argument(help="where to write the export")],
    progress: ProgressOpt = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="SUANLI_AUDIT_TOKEN",
            help="an auditor's token: export the disclosures too (the export is then restricted)",
        ),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="never the disclosures: an export anyone may read")
    ] = False,
) -> None:
    """Write the log's tiles, entry bundles, checkpoints and key to DIRECTORY.

    The directory is a valid SOURCE for `suanli audit verify`, and for any C2SP
    tlog-tiles client served from it by a static file server.
    """
    from api.cli.log_sources import export as write_export

    with _open(source, token) as src:
        try:
            with _progress(progress, "exporting tiles") as tick:
                size = write_export(src, directory, tick, disclosures=not public)
        except SourceError as exc:
            raise _error(str(exc)) from exc
    typer.echo(f"exported {size} entries from {src.name} to {directory}")


@app.command()
def prove(
    index: Annotated[int, typer.Argument(min=0, help="the entry's index")],
    output: Annotated[Path, typer.Option("-o", "--output", help="tlog-proof file to write")],
    source: Annotated[str | None, typer.Option("--source", help="server URL or export dir")] = None,
    db: Annotated[str | None, typer.Option("--db", help="database URL")] = None,
    size: Annotated[
        int | None, typer.Option(min=1, help="tree size (default: the latest checkpoint)")
    ] = None,
    entry_out: Annotated[
        Path | None, typer.Option("--entry-out", help="also write the entry's bytes here")
    ] = None,
) -> None:
    """Write a c2sp.org/tlog-proof@v1 file: the entry's inclusion proof and the signed
    checkpoint it leads to."""
    from ledger import merkle
    from ledger.tlogproof import TlogProof, format_tlog_proof

    if (source is None) == (db is None):
        raise _error("give exactly one of --source URL|DIR and --db URL")
    spec = source if source is not None else db
    assert spec is not None
    with _open(spec) as src:
        try:
            latest = src.checkpoint()  # with its witnesses' cosignatures
            tree = size if size is not None else peek_checkpoint(latest).size
            if index >= tree:
                raise _error(f"index {index} is not below the tree size {tree}")
            note = latest if tree == peek_checkpoint(latest).size else src.checkpoint_at(tree)
            if note is None:
                raise _error(f"{src.name} stores no signed checkpoint of size {tree}")
            read = src.node_reader(tree)
            hashes = merkle.inclusion_proof(index, tree, read)
            entry = src.entry(index, tree)
        except (SourceError, LedgerError) as exc:
            raise _error(str(exc)) from exc
    # Check before writing: the proof must lead to the root in the checkpoint.
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(entry), index, tree, hashes, peek_checkpoint(note).root
        )
    except LedgerError as exc:
        typer.echo(f"FAIL: the source's own proof does not verify: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc
    output.write_text(format_tlog_proof(TlogProof(index, tuple(hashes), note)), "utf-8")
    if entry_out is not None:
        entry_out.write_bytes(entry)
    typer.echo(f"wrote {output}: entry {index} in the tree of size {tree}")


@app.command("check-proof")
def check_proof(
    proof: Annotated[Path, typer.Argument(help="a c2sp.org/tlog-proof@v1 file")],
    entry: Annotated[Path, typer.Argument(help="the entry's canonical bytes")],
    key: Annotated[
        list[str],
        typer.Option(
            "--key", help="log verifier key in force at the checkpoint's size (repeatable)"
        ),
    ],
    origin: Annotated[str | None, typer.Option(help="expected checkpoint origin")] = None,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = None,
    witness_policy: WitnessPolicyOpt = None,
) -> None:
    """Verify a tlog-proof offline: the checkpoint's signature, the witnesses' cosignatures
    when asked for, then the inclusion."""
    from ledger.entry import Entry
    from ledger.tlogproof import parse_tlog_proof, verify_tlog_proof

    verifiers = [_verifier(k) for k in key]
    witnesses = _witness_policy(witness, quorum, witness_policy)
    try:
        text = proof.read_text("utf-8")
        data = entry.read_bytes()
    except OSError as exc:
        raise _error(str(exc)) from exc
    errors = []
    for verifier in verifiers:
        try:
            cp = verify_tlog_proof(text, data, verifier, origin)
        except LedgerError as exc:
            errors.append(f"{verifier.key_id}: {exc.message}")
            continue
        try:
            kind = Entry.from_bytes(data).kind
        except LedgerError:
            kind = "not a canonical suanli entry"
        at = parse_tlog_proof(text).index
        cosigned = _check_witnesses(parse_tlog_proof(text).checkpoint, witnesses)
        typer.echo(
            f"OK: entry {at} ({kind}) is in {cp.origin} at size {cp.size}, "
            f"checkpoint signed by {verifier.key_id}"
        )
        if cosigned is not None:
            typer.echo(cosigned)
        return
    for line in errors:
        typer.echo(f"FAIL: {line}")
    raise typer.Exit(EXIT_FAILED)

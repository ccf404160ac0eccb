"""``suanli audit``: verify a whole log offline, export it, prove and check one entry.

Every command names the log with ``--source`` (a server URL, an export directory, a
database URL or the web page's JSONL download; the older positional SOURCE and
``prove --db`` still work, unlisted), takes the pinned key as ``--key`` or ``--key-file``
and answers in JSON with ``--json``.

Exit status: 0 when every check holds, 1 when a check fails (the log, a checkpoint or a
proof is wrong), 2 on usage errors, 3 when the source cannot be read at all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.log_sources import DirSource, Source, SourceError, open_source, peek_checkpoint
from api.cli.manners import EXIT_UNAVAILABLE, say_error
from api.cli.options import command_group
from ledger.errors import LedgerError
from ledger.keys import Verifier
from ledger.tlogpolicy import Policy, demanded, require_quorum

if TYPE_CHECKING:
    from ledger.audit import Evidence, Report

app = command_group(
    "audit", "Verify the signed log offline (tiles, checkpoints, signatures, the fold)."
)

EXIT_FAILED = 1
EXIT_USAGE = 2


def _verifier(vkey: str, where: str = "--key") -> Verifier:
    try:
        return Verifier.parse(vkey.strip())
    except LedgerError as exc:
        raise typer.BadParameter(exc.message, param_hint=where) from exc


def _keys(keys: list[str] | None, key_file: Path | None, *, needed: bool) -> list[Verifier]:
    """The pinned keys: ``--key`` options and the lines of ``--key-file`` (blank lines and
    ``#`` comments skipped), in that order."""
    found = [_verifier(k) for k in keys or []]
    if key_file is not None:
        try:
            lines = key_file.read_text("utf-8").splitlines()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {key_file}: {exc.strerror or exc}", param_hint="--key-file"
            ) from None
        found += [
            _verifier(line, f"--key-file {key_file}")
            for line in lines
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if needed and not found:
        raise typer.BadParameter(
            "give the log's verifier key: --key VKEY or --key-file FILE", param_hint="--key"
        )
    return found


def _error(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    say_error(message)
    return typer.Exit(code)


def _source_error(exc: SourceError) -> typer.Exit:
    say_error(str(exc), exc.hint)
    return typer.Exit(EXIT_UNAVAILABLE)


def _one_source(source: str | None, positional: str | None, *more: str | None) -> str:
    given = [s for s in (source, positional, *more) if s is not None]
    if len(given) != 1:
        raise typer.BadParameter(
            "name the log once: --source URL|DIR|DB-URL|FILE.jsonl", param_hint="--source"
        )
    return given[0]


def _emit(as_json: bool, answer: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(answer, ensure_ascii=False))
    else:
        for line in lines:
            typer.echo(line)


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


def _open(spec: str, token: str | None = None, checkpoint_note: str | None = None) -> Source:
    try:
        source = open_source(spec, token, checkpoint_note)
    except SourceError as exc:
        raise _source_error(exc) from exc
    return source


CheckpointKey = Annotated[
    list[str] | None,
    typer.Option("--key", help="refuse unless the checkpoint verifies with this key"),
]
KeyFile = Annotated[
    Path | None,
    typer.Option("--key-file", help="a file of verifier keys, one a line (# comments)"),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source", help="the log: http(s):// server URL, export dir, db URL or .jsonl download"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="answer as one JSON object")]
GenesisKey = Annotated[
    list[str] | None,
    typer.Option("--key", help="the log's GENESIS verifier key (name+hex8+base64)"),
]
CheckpointFile = Annotated[
    Path | None,
    typer.Option(help="a .jsonl download: the signed checkpoint saved with it"),
]
Pin = Annotated[
    Path | None,
    typer.Option(help="a checkpoint saved earlier (a note file, or an earlier export dir)"),
]
Origin = Annotated[str | None, typer.Option(help="expected checkpoint origin")]
Jobs = Annotated[
    int | None, typer.Option(min=1, help="signature worker processes (default: all cores)")
]
AuditToken = Annotated[
    str | None,
    typer.Option(
        envvar="SUANLI_AUDIT_TOKEN",
        help="an auditor's token: read the disclosures too and replay every rule",
    ),
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
    try:
        text = None if policy_file is None else policy_file.read_bytes()
        return demanded(witness or [], quorum, text)
    except OSError as exc:
        raise _error(f"--witness-policy {policy_file}: {exc.strerror or exc}") from exc
    except LedgerError as exc:
        raise _error(f"--witness/--quorum/--witness-policy: {exc.message}") from exc


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


@app.command()
def verify(
    source_arg: Annotated[str | None, typer.Argument(hidden=True)] = None,
    source: SourceOpt = None,
    key: GenesisKey = None,
    key_file: KeyFile = None,
    checkpoint: CheckpointFile = None,
    pin: Pin = None,
    origin: Origin = None,
    jobs: Jobs = None,
    progress: ProgressOpt = None,
    token: AuditToken = None,
    public: Annotated[
        bool, typer.Option("--public", help="audit without disclosures, as anyone can")
    ] = False,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = None,
    witness_policy: WitnessPolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch every entry, rebuild the tree, check checkpoints, signatures and the fold.

    With --witness (and --quorum) or --witness-policy, the checkpoint audited must carry
    enough witnesses' cosignatures: a log cannot show this auditor a history it did not
    show its witnesses.

    With the disclosures (a database, an export made with them, or a server with --token),
    the audit is full: every entry is replayed through the fold and every opening checked
    against its digest. Without, it is public: what anyone can check, and it says what it
    could not. The web page's JSONL download is checked against --checkpoint."""
    spec = _one_source(source, source_arg)
    trusted_keys = _keys(key, key_file, needed=True)
    if len(trusted_keys) != 1:
        raise typer.BadParameter("verify pins one key: the log's genesis key", param_hint="--key")
    trusted = trusted_keys[0]
    note = _read_checkpoint(checkpoint)
    pinned, pinned_evidence = _load_pin(pin)
    witnesses = _witness_policy(witness, quorum, witness_policy)
    with _open(spec, token, note) as src:
        src.witness_policy = witnesses
        try:
            latest = src.checkpoint()
            try:
                size = peek_checkpoint(latest).size
            except SourceError as exc:  # the log's own head is broken: a failed check
                message = f"FAIL (checkpoint): {exc} (the latest, from {src.name})"
                _emit(as_json, {"ok": False, "source": src.name, "failures": [message]}, [message])
                raise typer.Exit(EXIT_FAILED) from exc
            cosigned = _check_witnesses(latest, witnesses)
            with _progress(progress and not as_json, "verifying entries") as tick:
                report = audit_source(
                    src, latest, trusted, origin=origin, pinned=pinned,
                    pinned_evidence=pinned_evidence, jobs=jobs,
                    progress=lambda done: tick(done, size), public=public,
                )  # fmt: skip
            served = None if report.ok else _served_key(src)
        except SourceError as exc:
            raise _source_error(exc) from exc
    lines = report.verdict()
    mismatch = _key_mismatch(report, trusted, served)
    if mismatch:
        lines.append(mismatch)
    if cosigned is not None and report.ok:
        lines.append(cosigned)
    _emit(as_json, {**_report_json(report, src.name, mismatch), "witnesses": cosigned}, lines)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _read_checkpoint(checkpoint: Path | None) -> str | None:
    if checkpoint is None:
        return None
    try:
        return checkpoint.read_text("utf-8")
    except OSError as exc:
        raise _error(f"--checkpoint {checkpoint}: {exc.strerror or exc}") from exc


def audit_source(
    src: Source,
    note: str,
    trusted: Verifier,
    *,
    origin: str | None = None,
    pinned: str | None = None,
    pinned_evidence: Evidence | None = None,
    jobs: int | None = None,
    progress: Callable[[int], None] = lambda _done: None,
    public: bool = False,
) -> Report:
    """The audit of ``src`` up to its checkpoint ``note``: what ``suanli audit verify`` runs,
    and ``suanli backup``/``restore`` on the copy they made."""
    from ledger.audit import verify_log

    size = peek_checkpoint(note).size
    return verify_log(
        src.entries(size),
        note,
        trusted,
        origin=origin,
        pinned=pinned,
        evidence=src.evidence(size),
        pinned_evidence=pinned_evidence,
        jobs=jobs,
        progress=progress,
        projection=None if public else _projection_within(src, size),
        snapshots=[] if public else src.snapshots(),
        disclosures=None if public else src.disclosures(),
    )


def _load_pin(pin: Path | None) -> tuple[str | None, Evidence | None]:
    """The pinned checkpoint (a note file, or an earlier export with its evidence)."""
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
    except SourceError as exc:
        raise _error(f"--pin {pin}: {exc}") from exc
    return pinned, Evidence(lambda: iter(saved), hashes)


def _served_key(src: Source) -> str | None:
    """The key the source says the log is signed with, if it can say (a broken server may
    not: the audit's verdict stands without it)."""
    try:
        return src.log_vkey()
    except (SourceError, LedgerError):
        return None


def _key_mismatch(report: Report, trusted: Verifier, served: str | None) -> str | None:
    """The plain words for the usual cause of a failed genesis or checkpoint check: the
    key pinned is not the one the log is signed with."""
    if report.ok or not any(f.check in ("genesis", "checkpoint") for f in report.failures):
        return None
    if served is None:
        return None
    try:
        served_id = Verifier.parse(served).key_id
    except LedgerError:
        return None
    if served_id == trusted.key_id:
        return None
    return (
        f"FAIL: the checkpoint is not signed by the pinned key {trusted.key_id} "
        f"(served key: {served})"
    )


def _report_json(report: Report, source: str, mismatch: str | None) -> dict[str, Any]:
    import base64

    return {
        "ok": report.ok,
        "source": source,
        "mode": report.mode,
        "entries": report.entries,
        "root": base64.b64encode(report.root).decode(),
        "checkpoint_size": report.checkpoint.size if report.checkpoint else None,
        "checkpoint_key": report.checkpoint_key,
        "key_mismatch": mismatch,
        "failures": [
            {"check": f.check, "index": f.index, "end": f.end, "message": f.message}
            for f in report.failures
        ],
        "kinds": dict(report.kinds),
        "verdict": report.verdict(),
    }


def _check_signed(note: str, keys: list[Verifier], origin: str | None = None) -> None:
    """Stop (exit 1) unless one of the pinned keys signed the checkpoint ``note``."""
    from ledger.checkpoint import open_checkpoint

    if not keys:
        return
    for verifier in keys:
        try:
            open_checkpoint(note, verifier, origin)
            return
        except LedgerError:
            continue
    pinned = ", ".join(k.key_id for k in keys)
    say_error(
        f"the checkpoint is not signed by the pinned key {pinned} (signed by: {_signers(note)})"
    )
    raise typer.Exit(EXIT_FAILED)


def _signers(note: str) -> str:
    from ledger.note import parse_note

    try:
        names = [f"{s.name}+{s.key_hash:08x}" for s in parse_note(note).signatures]
    except LedgerError:
        return "unreadable note"
    return ", ".join(names) or "nobody"


@app.command()
def export(
    paths: Annotated[
        list[str], typer.Argument(metavar="DIRECTORY", help="where to write the export")
    ],
    source: SourceOpt = None,
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
    key: CheckpointKey = None,
    key_file: KeyFile = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the log's tiles, entry bundles, checkpoints and key to DIRECTORY.

    The directory is a valid --source for `suanli audit verify`, and for any C2SP
    tlog-tiles client served from it by a static file server.
    """
    from api.cli.log_sources import export as write_export

    if len(paths) > 2:
        raise typer.BadParameter("give one DIRECTORY (and the log as --source)")
    directory = Path(paths[-1])
    spec = _one_source(source, paths[0] if len(paths) == 2 else None)
    keys = _keys(key, key_file, needed=False)
    with _open(spec, token) as src:
        try:
            _check_signed(src.checkpoint(), keys)
            with _progress(progress and not as_json, "exporting tiles") as tick:
                size = write_export(src, directory, tick, disclosures=not public)
        except SourceError as exc:
            raise _source_error(exc) from exc
    answer = {"ok": True, "source": src.name, "directory": str(directory), "size": size}
    _emit(as_json, answer, [f"exported {size} entries from {src.name} to {directory}"])


@app.command()
def prove(
    index: Annotated[int, typer.Argument(min=0, help="the entry's index")],
    output: Annotated[Path, typer.Option("-o", "--output", help="tlog-proof file to write")],
    source: SourceOpt = None,
    db: Annotated[str | None, typer.Option("--db", hidden=True)] = None,
    size: Annotated[
        int | None, typer.Option(min=1, help="tree size (default: the latest checkpoint)")
    ] = None,
    entry_out: Annotated[
        Path | None, typer.Option("--entry-out", help="also write the entry's bytes here")
    ] = None,
    key: CheckpointKey = None,
    key_file: KeyFile = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a c2sp.org/tlog-proof@v1 file: the entry's inclusion proof and the signed
    checkpoint it leads to."""
    from ledger import merkle
    from ledger.tlogproof import TlogProof, format_tlog_proof

    spec = _one_source(source, db)
    keys = _keys(key, key_file, needed=False)
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
        except SourceError as exc:
            raise _source_error(exc) from exc
        except LedgerError as exc:
            raise _error(exc.message) from exc
    _check_signed(note, keys)
    # Check before writing: the proof must lead to the root in the checkpoint.
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(entry), index, tree, hashes, peek_checkpoint(note).root
        )
    except LedgerError as exc:
        say_error(f"FAIL: the source's own proof does not verify: {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    output.write_text(format_tlog_proof(TlogProof(index, tuple(hashes), note)), "utf-8")
    if entry_out is not None:
        entry_out.write_bytes(entry)
    answer = {"ok": True, "source": src.name, "index": index, "size": tree, "output": str(output)}
    _emit(as_json, answer, [f"wrote {output}: entry {index} in the tree of size {tree}"])


@app.command("check-proof")
def check_proof(
    proof: Annotated[Path, typer.Argument(help="a c2sp.org/tlog-proof@v1 file")],
    entry: Annotated[Path, typer.Argument(help="the entry's canonical bytes")],
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key", help="log verifier key in force at the checkpoint's size (repeatable)"
        ),
    ] = None,
    key_file: KeyFile = None,
    origin: Origin = None,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = None,
    witness_policy: WitnessPolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a tlog-proof offline: the checkpoint's signature, the witnesses' cosignatures
    when asked for, then the inclusion. It reads only the two files (no --source)."""
    from ledger.entry import Entry
    from ledger.tlogproof import parse_tlog_proof, verify_tlog_proof

    verifiers = _keys(key, key_file, needed=True)
    witnesses = _witness_policy(witness, quorum, witness_policy)
    try:
        text = proof.read_text("utf-8")
        data = entry.read_bytes()
    except OSError as exc:
        raise _error(f"{exc.strerror or exc}: {exc.filename}") from exc
    errors = []
    for verifier in verifiers:
        try:
            cp = verify_tlog_proof(text, data, verifier, origin)
        except LedgerError as exc:
            errors.append(_proof_failure(verifier, exc, text))
            continue
        try:
            kind = Entry.from_bytes(data).kind
        except LedgerError:
            kind = "not a canonical suanli entry"
        at = parse_tlog_proof(text).index
        cosigned = _check_witnesses(parse_tlog_proof(text).checkpoint, witnesses)
        answer = {
            "ok": True,
            "index": at,
            "kind": kind,
            "origin": cp.origin,
            "size": cp.size,
            "key": verifier.key_id,
        }
        line = (
            f"OK: entry {at} ({kind}) is in {cp.origin} at size {cp.size}, "
            f"checkpoint signed by {verifier.key_id}"
        )
        answer["witnesses"] = cosigned
        _emit(as_json, answer, [line] + ([cosigned] if cosigned else []))
        return
    _emit(as_json, {"ok": False, "failures": errors}, [f"FAIL: {line}" for line in errors])
    raise typer.Exit(EXIT_FAILED)


def _proof_failure(verifier: Verifier, exc: LedgerError, text: str) -> str:
    if exc.reason == "UNVERIFIED_NOTE":
        from ledger.tlogproof import parse_tlog_proof

        try:
            signers = _signers(parse_tlog_proof(text).checkpoint)
        except LedgerError:
            signers = "unreadable"
        return (
            f"the checkpoint is not signed by the pinned key {verifier.key_id} "
            f"(signed by: {signers})"
        )
    return f"{verifier.key_id}: {exc.message}"

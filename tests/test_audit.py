"""``suanli audit``: the offline verifier catches tampering and names the index.

The end-to-end tests build a real service (SQLite and PostgreSQL, via ``db_url``), serve it
with uvicorn on a real socket, and run the CLI against it, against an export directory and
against the database URL. The attacker has direct database access: they drop (SQLite) or
disable (PostgreSQL) the append-only triggers first, then rewrite rows.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from typer.testing import CliRunner

from api.bootstrap import Service
from api.cli.audit import app as audit_app
from api.http.app import create_app
from ledger import audit, merkle, tiles
from ledger.audit import Evidence, Missing, signed_message, verify_log
from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.entry import Entry
from ledger.errors import VerificationError
from ledger.fold import RULES, opened
from ledger.keys import Signer
from ledger.note import sign_note
from ledger.timeutil import format_time

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


# --- helpers -------------------------------------------------------------------------------


def grow(service: Service, batches: int = 15, per_batch: int = 3) -> None:
    """Append batches of entries (key registrations and notes by three different keys);
    each batch is one commit, hence one stored signed checkpoint."""
    ledger = service.ledger
    for b in range(batches):
        with ledger.transaction() as tx:
            for i in range(per_batch):
                if i % 3 == 0:
                    vk = Signer.generate(f"k{b}-{i}").verifier.vkey
                    tx.append(
                        tx.sign("key.register", {"vkey": vk, "roles": ["service"]}, ledger.keys.log)
                    )
                else:
                    signer = ledger.keys.issuer if i % 3 == 1 else ledger.keys.service
                    tx.append(tx.sign("log.note", {"text": f"note {b}.{i}"}, signer))


@dataclasses.dataclass
class Grown:
    """A service whose genesis commit made G entries, then 15 commits of 3: N = G + 45
    entries, with a stored checkpoint at every size G + 3k."""

    service: Service
    G: int
    N: int

    @property
    def key(self) -> str:
        return self.service.ledger.keys.log.verifier.vkey

    def latest(self) -> str:
        latest = self.service.ledger.store.latest_checkpoint()
        assert latest is not None
        return latest[1]


@pytest.fixture
def grown(open_service: Callable[..., Service], db_url: str) -> Grown:
    svc = open_service(db_url)
    genesis = svc.ledger.store.size()
    grow(svc)
    assert svc.ledger.store.size() == genesis + 45
    return Grown(svc, genesis, genesis + 45)


@contextmanager
def serving(service: Service) -> Iterator[str]:
    """The real ASGI app under uvicorn on a free port (bound by uvicorn), in a thread."""
    config = uvicorn.Config(
        create_app(service), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(audit_app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def audit_verify(source: str, key: str, *more: str, jobs: int = 1) -> tuple[int, str]:
    return run("verify", source, "--key", key, "--jobs", str(jobs), "--no-progress", *more)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the attacker --------------------------------------------------------------------------

LOG_TABLES = ("log_entries", "log_nodes", "checkpoints")


def attacker(service: Service) -> sa.Engine:
    """Direct database access with the append-only triggers out of the way."""
    engine = service.ledger.store.engine
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in LOG_TABLES:
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        else:
            names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for name in list(names.scalars()):
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    return engine


def row(engine: sa.Engine, index: int) -> bytes:
    query = sa.text("SELECT data FROM log_entries WHERE idx = :i")
    with engine.connect() as conn:
        return bytes(conn.execute(query, {"i": index}).one()[0])


def set_row(engine: sa.Engine, index: int, data: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE log_entries SET data = :d WHERE idx = :i"), {"d": data, "i": index}
        )


def flip_time_digit(data: bytes) -> bytes:
    """Change ONE byte: the last microsecond digit of ``at``; still canonical JSON."""
    pos = data.index(b'"at":"') + len(b'"at":"') + 26
    assert data[pos : pos + 2] == b'Z"', data[: pos + 2]
    digit = data[pos - 1] - ord("0")
    return data[: pos - 1] + bytes([ord("0") + (digit + 1) % 10]) + data[pos:]


def truncate(engine: sa.Engine, k: int) -> None:
    """Remove entries >= k with their tree nodes and checkpoints, as an attacker would to
    make the service append at k again."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM log_entries WHERE idx >= :k"), {"k": k})
        conn.execute(sa.text("DELETE FROM checkpoints WHERE size > :k"), {"k": k})
        for level in range(64):
            # node (level, i) covers leaves [i * 2**level, (i + 1) * 2**level)
            conn.execute(
                sa.text("DELETE FROM log_nodes WHERE level = :l AND idx >= :i"),
                {"l": level, "i": k >> level},
            )


def audit_tampered(
    open_service: Callable[..., Service],
    db_url: str,
    kind: str,
    key: str,
    *more: str,
    jobs: int = 1,
) -> tuple[int, str]:
    """Audit the tampered log through a freshly started server (http) or the database."""
    if kind == "db":
        return audit_verify(db_url, key, *more, jobs=jobs)
    with serving(open_service(db_url)) as url:
        return audit_verify(url, key, *more, jobs=jobs)


SOURCES = ["http", "db"]


# --- end to end: a clean log verifies --------------------------------------------------------


def test_served_log_verifies_over_http_with_every_core(grown: Grown) -> None:
    with serving(grown.service) as url:
        code, out = audit_verify(url, grown.key, jobs=2)
    assert code == 0, out
    root = open_checkpoint(grown.latest(), grown.service.ledger.keys.log.verifier).root
    assert out.splitlines()[0] == (
        f"OK: {grown.N} entries, root {b64(root)}, checkpoint size {grown.N} verified with key "
        f"{grown.service.ledger.keys.log.key_id}"
    )


def test_export_then_verify_offline(grown: Grown, tmp_path: Path) -> None:
    export = tmp_path / "export"
    with serving(grown.service) as url:
        code, out = run("export", url, str(export), "--no-progress")
        assert code == 0, out
    # the server is gone: the export alone verifies
    assert (export / "checkpoint").read_text() == grown.latest()
    assert (export / "key").read_text().strip() == grown.key
    assert (export / tiles.entries_path(0, grown.N)).is_file()
    assert (export / tiles.tile_path(0, 0, grown.N)).is_file()
    stored = [json.loads(line) for line in (export / "checkpoints.jsonl").read_text().splitlines()]
    assert [c["size"] for c in stored] == list(range(grown.G, grown.N + 1, 3))
    code, out = audit_verify(str(export), grown.key)
    assert code == 0, out
    assert out.startswith(f"OK: {grown.N} entries")


def test_export_from_the_database_url(grown: Grown, tmp_path: Path, db_url: str) -> None:
    code, out = run("export", db_url, str(tmp_path / "e"), "--no-progress")
    assert code == 0, out
    assert (tmp_path / "e" / "key").read_text().strip() == grown.key
    code, out = audit_verify(str(tmp_path / "e"), grown.key)
    assert code == 0, out
    code, out = audit_verify(db_url, grown.key)
    assert code == 0, out


def test_full_and_partial_tiles(
    open_service: Callable[..., Service], db_url: str, tmp_path: Path
) -> None:
    svc = open_service(db_url)
    grow(svc, batches=6, per_batch=90)
    size = svc.ledger.store.size()
    assert 512 < size < 768  # two full level-0 tiles, a partial one, a partial level-1 tile
    with serving(svc) as url:
        code, out = run("export", url, str(tmp_path / "e"), "--no-progress")
        assert code == 0, out
        code, out = audit_verify(url, svc.ledger.keys.log.verifier.vkey, jobs=2)
        assert code == 0, out
    names = {p.relative_to(tmp_path / "e").as_posix() for p in (tmp_path / "e").rglob("*")}
    want = {ref.path for ref in tiles.tiles_for_size(size)}
    want |= {tiles.entries_path(r.n, r.width) for r in tiles.tiles_for_size(size) if r.level == 0}
    assert want == {n for n in names if n.startswith("tile/") and not (tmp_path / "e" / n).is_dir()}
    assert {"tile/0/000", "tile/0/001", f"tile/0/002.p/{size - 512}", "tile/1/000.p/2"} <= names
    code, out = audit_verify(str(tmp_path / "e"), svc.ledger.keys.log.verifier.vkey)
    assert code == 0 and out.startswith(f"OK: {size} entries"), out


# --- end to end: tampering is caught, and the index named ------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_one_changed_byte_is_caught(
    grown: Grown, open_service: Callable[..., Service], db_url: str, kind: str
) -> None:
    t = grown.G + 12
    engine = attacker(grown.service)
    before = row(engine, t)
    after = flip_time_digit(before)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 1
    set_row(engine, t, after)
    code, out = audit_tampered(open_service, db_url, kind, grown.key, jobs=2)
    assert code == 1, out
    first = out.splitlines()[0]
    assert first.startswith(f"FAIL at index {t} (signature): signature by key "), out
    assert first.endswith("does not verify")
    # the tree check names the same index on its own, and proves it
    assert (
        f"FAIL at index {t} (tree): entry {t} was altered: its leaf hash is not the one the log "
        f"signed (the signed checkpoint of size {t + 3} does not match the entries; the signed "
        f"checkpoint of size {t} does)"
    ) in out


@pytest.mark.parametrize("kind", SOURCES)
def test_a_deleted_row_is_caught(
    grown: Grown, open_service: Callable[..., Service], db_url: str, kind: str
) -> None:
    d = grown.G + 18
    with attacker(grown.service).begin() as conn:
        conn.execute(sa.text("DELETE FROM log_entries WHERE idx = :d"), {"d": d})
    code, out = audit_tampered(open_service, db_url, kind, grown.key)
    assert code == 1, out
    first = out.splitlines()[0]
    if kind == "db":  # rows carry their index: the gap is named directly
        assert first == (
            f"FAIL at index {d} (source): entry is missing: no row with this index in log_entries"
        )
    else:  # an entry bundle has no indices: the stored leaf hashes name it
        assert first.startswith(
            f"FAIL at index {d} (tree): entry {d} is missing: the entry read at {d} is the log's "
            f"entry {d + 1} (a row was deleted, the ones after it moved up)"
        ), out
        assert f"FAIL at index {grown.N - 1} (source): entry is missing: entry bundle" in out


@pytest.mark.parametrize("kind", SOURCES)
def test_two_swapped_rows_are_caught(
    grown: Grown, open_service: Callable[..., Service], db_url: str, kind: str
) -> None:
    i, j = grown.G + 7, grown.G + 26
    engine = attacker(grown.service)
    a, b = row(engine, i), row(engine, j)
    set_row(engine, i, b)
    set_row(engine, j, a)
    code, out = audit_tampered(open_service, db_url, kind, grown.key)
    assert code == 1, out
    assert out.splitlines()[0].startswith(
        f"FAIL at index {i} (tree): entries {i} and {j} are swapped"
    ), out


@pytest.mark.parametrize("kind", SOURCES)
def test_truncate_and_reappend_is_caught_by_the_pin(
    grown: Grown, open_service: Callable[..., Service], db_url: str, kind: str, tmp_path: Path
) -> None:
    k, n = grown.G + 25, grown.N
    pin = tmp_path / "pinned.checkpoint"
    pin.write_text(grown.latest())
    code, out = run("export", db_url, str(tmp_path / "earlier"), "--no-progress")
    assert code == 0, out

    truncate(attacker(grown.service), k)
    rewritten = open_service(db_url)  # the service restarts on the truncated log
    grow(rewritten, batches=8, per_batch=3)  # every new checkpoint validly signed
    assert rewritten.ledger.store.size() == k + 24 > n

    # without the pin the rewritten log is self-consistent: nothing to see
    code, out = audit_tampered(open_service, db_url, kind, grown.key)
    assert code == 0, out
    # the pinned checkpoint catches it: it names the pinned size, and a range
    code, out = audit_tampered(open_service, db_url, kind, grown.key, "--pin", str(pin))
    assert code == 1, out
    first = out.splitlines()[0]
    assert first.startswith(
        f"FAIL in entries 0..{n - 1} (pin): the log's root at the pinned size {n} is "
    ), out
    assert f"entries before {n} were rewritten" in first
    # an earlier export as the pin names the first rewritten index exactly
    earlier = str(tmp_path / "earlier")
    code, out = audit_tampered(open_service, db_url, kind, grown.key, "--pin", earlier)
    assert code == 1, out
    first = out.splitlines()[0]
    assert first.startswith(f"FAIL at index {k} (pin): entry {k} was altered"), out
    assert "the earlier export's signed checkpoint of size" in first


def test_a_log_cut_short_of_the_pin_names_the_first_missing_index(
    grown: Grown, open_service: Callable[..., Service], db_url: str, tmp_path: Path
) -> None:
    k = grown.G + 36
    pin = tmp_path / "pinned"
    pin.write_text(grown.latest())
    truncate(attacker(grown.service), k)
    code, out = audit_tampered(open_service, db_url, "db", grown.key, "--pin", str(pin))
    assert code == 1, out
    assert out.splitlines()[0] == (
        f"FAIL at index {k} (pin): the log has {k} entries, fewer than the pinned size "
        f"{grown.N}: it was truncated (entries from index {k} on are gone)"
    )


def test_deleting_the_last_rows_is_caught(
    grown: Grown, open_service: Callable[..., Service], db_url: str
) -> None:
    with attacker(grown.service).begin() as conn:
        conn.execute(sa.text("DELETE FROM log_entries WHERE idx >= :k"), {"k": grown.N - 2})
    code, out = audit_tampered(open_service, db_url, "http", grown.key)
    assert code == 1, out
    assert out.splitlines()[0].startswith(
        f"FAIL at index {grown.N - 2} (source): entry is missing: entry bundle "
        f"{tiles.entries_path(0, grown.N)} holds {grown.N - 2} entries, not {grown.N}"
    )


def test_altered_stored_hashes_leave_a_range_not_a_guess(
    grown: Grown, open_service: Callable[..., Service], db_url: str
) -> None:
    """When the attacker also rewrites the stored leaf hash, the stored hashes no longer
    reproduce the signed root; the tree check then names the bracket between checkpoints."""
    t = grown.G + 12
    engine = attacker(grown.service)
    forged = flip_time_digit(row(engine, t))
    set_row(engine, t, forged)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE log_nodes SET hash = :h WHERE level = 0 AND idx = :t"),
            {"h": merkle.leaf_hash(forged), "t": t},
        )
    code, out = audit_tampered(open_service, db_url, "http", grown.key)
    assert code == 1, out
    assert out.splitlines()[0].startswith(f"FAIL at index {t} (signature)")
    assert (
        f"FAIL in entries {t}..{t + 2} (tree): the signed checkpoint of size {t + 3} does not "
        f"match the entries; the signed checkpoint of size {t} does; the log's stored leaf "
        "hashes agree with the entries but not with the signed root, so they were altered too"
    ) in out


def test_a_damaged_export_fails_the_check_not_the_command(
    grown: Grown, tmp_path: Path, db_url: str
) -> None:
    export = tmp_path / "e"
    assert run("export", db_url, str(export))[0] == 0
    bundle = export / tiles.entries_path(0, grown.N)
    bundle.unlink()
    code, out = audit_verify(str(export), grown.key)
    assert code == 1, out
    assert out.splitlines()[0] == (
        f"FAIL at index 0 (source): entry is missing: entry bundle "
        f"{tiles.entries_path(0, grown.N)} is not available"
    )
    (export / "checkpoint").write_text("not a checkpoint\n")
    code, out = audit_verify(str(export), grown.key)
    assert code == 1 and out.startswith("FAIL (checkpoint): malformed checkpoint"), out


# --- keys ----------------------------------------------------------------------------------


def rotate(service: Service, old: Signer, new: Signer, *signers: Signer) -> int:
    """Append log.rotate to ``new``; the same commit's checkpoint is signed by ``new``."""
    ledger = service.ledger
    with ledger.transaction() as tx:
        entry = tx.sign("log.rotate", {"new_key": new.verifier.vkey}, *(signers or (old, new)))
        index = tx.append(entry).index
        ledger.keys = dataclasses.replace(ledger.keys, log=new)
    return index


def test_key_rotation_is_followed_from_the_genesis_key(grown: Grown, tmp_path: Path) -> None:
    service = grown.service
    old = service.ledger.keys.log
    new = Signer.generate(service.ledger.origin)  # a log key's name is the origin
    at = rotate(service, old, new)
    assert at == grown.N
    grow(service, batches=3, per_batch=3)
    size = service.ledger.store.size()
    for cp_size, note in service.ledger.store.checkpoints():
        signer, other = (old, new) if cp_size <= at else (new, old)
        assert open_checkpoint(note, signer.verifier).size == cp_size
        with pytest.raises(VerificationError):
            open_checkpoint(note, other.verifier)

    with serving(service) as url:
        code, out = audit_verify(url, old.verifier.vkey)
        assert code == 0, out
        assert out.splitlines()[0].endswith(
            f"checkpoint size {size} verified with key {new.key_id}"
        )
        assert f"log key from size 0: {old.key_id}" in out
        assert f"log key from size {at + 1}: {new.key_id}" in out
        # the chain of trust starts at the genesis key, not at the current one
        code, out = audit_verify(url, new.verifier.vkey)
        assert code == 1, out
        assert out.splitlines()[0].startswith(
            f"FAIL at index 0 (genesis): log.genesis names log key {old.key_id}, not the "
            f"trusted key {new.key_id}"
        )
        # a proof for an entry after the rotation checks with the new key only
        proof, entry = tmp_path / "p", tmp_path / "e"
        args = ["-o", str(proof), "--entry-out", str(entry)]
        assert run("prove", str(size - 1), "--source", url, *args)[0] == 0
    assert run("check-proof", str(proof), str(entry), "--key", old.verifier.vkey)[0] == 1
    code, out = run(
        "check-proof",
        str(proof),
        str(entry),
        "--key",
        old.verifier.vkey,
        "--key",
        new.verifier.vkey,
    )
    assert code == 0 and out.endswith(f"signed by {new.key_id}\n"), out


def test_a_forged_rotation_is_caught(
    grown: Grown, open_service: Callable[..., Service], db_url: str
) -> None:
    """Someone without the log key writes a rotation to their own key: it claims the log
    key's signature, which does not verify; every checkpoint after it is signed by the
    impostor key the forged rotation installed, and verifies only because of it."""
    service = grown.service
    real = service.ledger.keys.log
    mine = Signer.generate(service.ledger.origin)
    impostor = Signer(real.name, bytes(32))
    ledger = service.ledger
    with ledger.transaction() as tx:
        entry = tx.sign("log.rotate", {"new_key": mine.verifier.vkey}, real, mine)
        forged = dataclasses.replace(entry.sigs[0], sig=impostor.sign(entry.message()))
        # The service itself refuses a bad signature; the attacker skips that check.
        tx.append(dataclasses.replace(entry, sigs=(forged, entry.sigs[1])), signatures_checked=True)
        ledger.keys = dataclasses.replace(ledger.keys, log=mine)
    code, out = audit_tampered(open_service, db_url, "db", real.verifier.vkey)
    assert code == 1, out
    assert out.splitlines()[0] == (
        f"FAIL at index {grown.N} (signature): signature by key {real.key_id} does not verify"
    )


# --- proofs --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["http", "export", "db"])
def test_prove_and_check_proof(grown: Grown, tmp_path: Path, db_url: str, where: str) -> None:
    t, n, origin = grown.G + 12, grown.N, grown.service.ledger.origin
    with serving(grown.service) as url:
        if where == "export":
            assert run("export", url, str(tmp_path / "x"), "--no-progress")[0] == 0
        args = {
            "http": ["--source", url],
            "export": ["--source", str(tmp_path / "x")],
            "db": ["--db", db_url],
        }[where]
        for index, size in ((0, None), (t, None), (t, t + 3), (n - 1, n), (0, grown.G)):
            proof, entry = tmp_path / f"p{index}-{size}", tmp_path / f"e{index}-{size}"
            more = ["--size", str(size)] if size else []
            out_args = ["-o", str(proof), "--entry-out", str(entry)]
            code, out = run("prove", str(index), *args, *more, *out_args)
            assert code == 0, out
            text = proof.read_text()
            assert text.startswith(f"c2sp.org/tlog-proof@v1\nindex {index}\n")
            assert f"\n\n{origin}\n{size or n}\n" in text
            assert entry.read_bytes() == grown.service.ledger.store.entries(index, index + 1)[0]
            code, out = run("check-proof", str(proof), str(entry), "--key", grown.key)
            assert code == 0, out
            kind = Entry.from_bytes(entry.read_bytes()).kind
            assert out.startswith(f"OK: entry {index} ({kind}) is in {origin} at size {size or n}")
    # a different entry, or a different key, does not check
    proof, entry = tmp_path / f"p{t}-None", tmp_path / f"e{t}-None"
    other = tmp_path / "other"
    other.write_bytes(grown.service.ledger.store.entries(t + 1, t + 2)[0])
    code, out = run("check-proof", str(proof), str(other), "--key", grown.key)
    assert code == 1 and out.startswith("FAIL: "), out
    stranger = Signer.generate(origin).verifier.vkey
    assert run("check-proof", str(proof), str(entry), "--key", stranger)[0] == 1
    # a size with no stored checkpoint is a usage error
    code, out = run("prove", "3", "--db", db_url, "--size", str(t + 1), "-o", str(tmp_path / "x"))
    assert code == 2 and f"no signed checkpoint of size {t + 1}" in out, out


# --- usage ---------------------------------------------------------------------------------


def test_usage_errors_exit_2_and_unreadable_sources_exit_3(grown: Grown, tmp_path: Path) -> None:
    code, out = audit_verify(str(tmp_path / "nowhere"), grown.key)
    assert code == 3 and "not an http(s):// URL" in out
    code, out = audit_verify(str(tmp_path), grown.key)
    assert code == 3 and "not an export directory" in out
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code, out = audit_verify(f"http://127.0.0.1:{port}", grown.key)
    assert code == 3 and "cannot read" in out
    code, out = audit_verify(str(tmp_path), "not-a-key")
    assert code == 2 and "--key" in out
    code, out = run("prove", "1", "-o", str(tmp_path / "p"))
    assert code == 2 and "name the log once" in out
    code, out = audit_verify("sqlite:///" + str(tmp_path / "none.db"), grown.key)
    assert code == 3 and "no SQLite database" in out
    assert not (tmp_path / "none.db").exists()


def test_the_suanli_command_mounts_audit(grown: Grown, db_url: str) -> None:
    command = "from api.cli import main; main()"
    args = ["audit", "verify", db_url, "--key", grown.key, "--jobs", "2"]
    done = subprocess.run(
        [sys.executable, "-c", command, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: {grown.N} entries")
    assert done.stderr == ""  # no progress bar when stderr is not a terminal


# --- the pipeline on its own (no storage) ---------------------------------------------------

T0 = datetime(2023, 8, 1, tzinfo=UTC)


@dataclasses.dataclass
class Log:
    key: Signer
    entries: list[bytes]
    notes: dict[int, str]

    def note(self, size: int | None = None) -> str:
        return self.notes[len(self.entries) if size is None else size]

    def items(self) -> list[tuple[int, bytes]]:
        return list(enumerate(self.entries))

    def evidence(self) -> Evidence:
        hashes = [merkle.leaf_hash(e) for e in self.entries]
        return Evidence(lambda: sorted(self.notes.items()), lambda a, b: hashes[a:b])


def make_log(n: int = 40, sign: Callable[[int, Entry, Signer], Entry] | None = None) -> Log:
    origin = "example.test/audit"
    key = Signer(origin, bytes(range(32)))
    user = Signer("user", bytes(range(1, 33)))
    entries = [
        Entry(
            "log.genesis", format_time(T0), {"origin": origin, "log_key": key.verifier.vkey}
        ).signed(key)
    ]
    entries.append(
        Entry(
            "key.register", format_time(T0), {"vkey": user.verifier.vkey, "roles": ["service"]}
        ).signed(key)
    )
    for i in range(2, n):
        entry = Entry("log.note", format_time(T0 + timedelta(seconds=i)), {"text": f"n{i}"})
        entries.append(sign(i, entry, user) if sign else entry.signed(user))
    data = [e.to_bytes() for e in entries]
    cr = merkle.CompactRange(0, [])
    notes = {}
    for i, d in enumerate(data):
        cr.append(merkle.leaf_hash(d))
        if (i + 1) % 4 == 0 or i + 1 == len(data):
            notes[i + 1] = sign_checkpoint(Checkpoint(origin, i + 1, cr.root()), key)
    return Log(key, data, notes)


def test_pipeline_accepts_a_good_log_inline_and_in_a_pool() -> None:
    log = make_log()
    for jobs in (1, 2):
        report = verify_log(log.items(), log.note(), log.key.verifier, jobs=jobs, chunk_size=7)
        assert report.ok, report.failures
        assert report.entries == 40 and report.checkpoint is not None
        assert report.root == report.checkpoint.root
        assert report.kinds == {"log.genesis": 1, "key.register": 1, "log.note": 38}
        ticks: list[int] = []
    verify_log(log.items(), log.note(), log.key.verifier, jobs=1, progress=ticks.append)
    assert ticks[-1] == 40


def test_pipeline_names_a_bad_signature_from_the_pool() -> None:
    stranger = Signer("user", bytes(32))  # signs in place of the registered "user" key

    def sign(i: int, entry: Entry, user: Signer) -> Entry:
        if i == 29:
            good = entry.signed(user)
            bad = dataclasses.replace(good.sigs[0], sig=stranger.sign(entry.message()))
            return dataclasses.replace(good, sigs=(bad,))
        return entry.signed(user)

    log = make_log(sign=sign)
    report = verify_log(log.items(), log.note(), log.key.verifier, jobs=2, chunk_size=5)
    assert not report.ok
    assert report.first == audit.Failure(
        "signature",
        f"signature by key {Signer('user', bytes(range(1, 33))).key_id} does not verify",
        29,
    )


def test_pipeline_refuses_non_canonical_entries_and_unknown_keys() -> None:
    log = make_log()
    spaced = log.entries[9].replace(b'"kind":', b'"kind": ')
    items = log.items()
    items[9] = (9, spaced)
    report = verify_log(items, log.note(), log.key.verifier, jobs=1)
    assert report.first is not None and report.first.index == 9
    assert report.first.check == "entry" and "canonical" in report.first.message

    stranger = Signer("stranger", bytes(32))
    log2 = make_log(sign=lambda i, e, u: e.signed(stranger) if i == 13 else e.signed(u))
    report = verify_log(log2.items(), log2.note(), log2.key.verifier, jobs=1)
    assert report.first is not None
    assert report.first.describe().startswith(
        "FAIL at index 13 (fold): log.note refused by the fold: "
        "entry signed by unregistered key stranger+"
    )


def test_pipeline_reports_missing_entries_and_short_logs() -> None:
    log = make_log()
    items: list[tuple[int, bytes] | Missing] = list(log.items())
    items[21] = Missing(21, "bundle short")
    report = verify_log(items, log.note(), log.key.verifier, jobs=1)
    assert report.first == audit.Failure("source", "entry is missing: bundle short", 21)
    report = verify_log(log.items()[:33], log.note(), log.key.verifier, jobs=1)
    assert report.first is not None and report.first.index == 33
    assert "only 33 entries were read" in report.first.message
    # indices skipped without a word are missing too
    report = verify_log(log.items()[:5] + log.items()[6:], log.note(), log.key.verifier, jobs=1)
    assert report.first is not None and report.first.index == 5


def test_pipeline_brackets_a_tree_mismatch_between_signed_checkpoints() -> None:
    log = make_log()
    items = log.items()
    # rows 10 and 11 swapped; signatures all verify, the fold accepts the order
    items[10], items[11] = (10, log.entries[11]), (11, log.entries[10])
    report = verify_log(items, log.note(), log.key.verifier, jobs=1)
    assert report.first is not None
    assert report.first.describe().startswith(
        "FAIL in entries 0..39 (tree): the latest checkpoint (size 40) does not match the "
        "entries (stored leaf hashes unavailable)"
    )
    report = verify_log(items, log.note(), log.key.verifier, jobs=1, evidence=log.evidence())
    assert report.first is not None
    assert report.first.describe() == (
        "FAIL at index 10 (tree): entries 10 and 11 are swapped (the signed checkpoint of "
        "size 12 does not match the entries; the signed checkpoint of size 8 does)"
    )
    # checkpoints that do not verify are no evidence
    forged = Signer(log.key.name, bytes(32))
    fake = {
        s: sign_checkpoint(open_checkpoint(n, log.key.verifier), forged)
        for s, n in log.notes.items()
        if s < 40
    }
    bogus = Evidence(lambda: sorted(fake.items()), None)
    report = verify_log(items, log.note(), log.key.verifier, jobs=1, evidence=bogus)
    assert report.first is not None and (report.first.index, report.first.end) == (0, 40)


def test_pipeline_checks_the_checkpoint_signature_and_origin() -> None:
    log = make_log()
    other = Signer(log.key.name, bytes(32))
    cp = open_checkpoint(log.note(), log.key.verifier)
    report = verify_log(log.items(), sign_checkpoint(cp, other), log.key.verifier, jobs=1)
    assert report.first is not None and report.first.index is None
    assert report.first.describe().startswith(
        "FAIL (checkpoint): the latest checkpoint does not verify"
    )
    report = verify_log(
        log.items(), log.note(), log.key.verifier, jobs=1, origin="example.test/other"
    )
    assert report.first is not None and "origin" in report.first.message


def test_pipeline_replays_the_domain_fold() -> None:
    """Vouchers and claims replay through the same fold; a usage record claimed twice (each
    claim validly signed by the centre) is refused by the replay, at its index."""
    from domain_helpers import YUAN, World  # the domain tests' builder of a signed log

    world = World()
    voucher = world.voucher()
    world.claim(voucher, 1000 * YUAN)
    world.claim(voucher, 2000 * YUAN)
    claimed = opened(world.entries[-2])
    again = world.entry("claim", {**claimed.body, "cost_fen": 5000 * YUAN}, world.centre())
    signed = [*world.entries, again]
    data = [e.to_bytes() for e in signed]
    full = {i: e.disclosures for i, e in enumerate(signed)}

    def disclosures(start: int, end: int) -> dict[int, tuple[str, ...]]:
        return {i: d for i, d in full.items() if start <= i < end}

    origin = world.state.registry.origin
    assert origin is not None
    cr = merkle.CompactRange(0, [])
    notes = []
    for d in data:
        cr.append(merkle.leaf_hash(d))
        # the World's log key is not named after its origin: sign the note directly
        notes.append(sign_note(Checkpoint(origin, cr.size, cr.root()).body(), [world.log]))
    good = verify_log(
        enumerate(data[:-1]), notes[-2], world.log.verifier, jobs=2, chunk_size=4,
        disclosures=disclosures,
    )  # fmt: skip
    assert good.ok, good.failures
    assert good.mode == "full"
    assert {"policy.publish", "voucher.issue", "claim"} <= set(good.kinds)
    # without the disclosures the same log passes the public audit, which says what it
    # could not check
    public = verify_log(enumerate(data[:-1]), notes[-2], world.log.verifier, jobs=1)
    assert public.ok and public.mode == "public" and public.unchecked["claim"] == 2
    bad = verify_log(
        enumerate(data), notes[-1], world.log.verifier, jobs=2, chunk_size=4,
        disclosures=disclosures,
    )  # fmt: skip
    assert bad.first is not None
    assert bad.first.describe().startswith(
        f"FAIL at index {len(data) - 1} (fold): claim refused by the fold: record "
        f"{claimed.body['record_id']} of nscc-cd was already claimed at entry {len(data) - 3}"
    )


def test_signed_message_is_the_entry_message() -> None:
    key = Signer("k", bytes(32))
    bodies: list[dict[str, Any]] = [
        {},
        {"sigs": [{"key": "x", "sig": "y"}], "a": 1},
        {"text": ',"sigs":[ ],"v":1}', "z": {"sigs": []}},
        {"名": "成都", "emoji": "😀", "nested": [{"sigs": ',"sigs":['}]},
    ]
    for body in bodies:
        for signers in ((), (key,), (key, Signer("k2", bytes(range(32))))):
            for logged in (None, format_time(T0 + timedelta(seconds=1))):
                entry = Entry("log.note", format_time(T0), body).signed(*signers)
                if logged is not None:  # as the ledger records another author's entry
                    entry = entry.stamped(logged)
                    assert b'"logged"' in entry.to_bytes()
                data = entry.to_bytes()
                assert signed_message(data, Entry.from_bytes(data)) == entry.message()


def test_every_entry_kind_has_one_rule_and_a_handler() -> None:
    """The fold's one list of rules covers every kind the domain builds, with a handler."""
    domain_kinds = {
        "policy.publish",
        "centre.register",
        "ratecard.publish",
        "entity.register",
        "entity.blacklist",
        "entity.unblacklist",
        "application.submit",
        "application.review",
        "application.decide",
        "voucher.issue",
        "voucher.suspend",
        "voucher.reinstate",
        "voucher.revoke",
        "voucher.expire",
        "grant.pay",
        "claim",
        "hold",
        "capture",
        "void",
        "claim.reverse",
        "clawback",
        "statement.open",
        "statement.lines",
        "statement.close",
        "erase",
        "reimbursement.submit",
        "reimbursement.review",
        "reimbursement.decide",
        "reimbursement.pay",
    }
    log_kinds = {"log.genesis", "log.rotate", "key.register", "key.retire", "log.note"}
    assert set(RULES) == domain_kinds | log_kinds
    assert all(callable(rule.handle) for rule in RULES.values())
    # No module registers anything by being imported: no decorator is left to do so.
    for path in (ROOT / "ledger").rglob("*.py"):
        assert not re.search(r"^@rule\(", path.read_text("utf-8"), re.M), path


def test_full_audit_names_the_index_of_an_opening_that_does_not_match() -> None:
    """An opening whose value or salt was changed after signing no longer hashes to the
    digest in the leaf: the full audit fails there, the public audit cannot tell."""
    from domain_helpers import YUAN, World

    from ledger.disclosure import disclose, read_disclosure

    world = World()
    world.claim(world.voucher(), 1000 * YUAN)
    data = [e.to_bytes() for e in world.entries]
    claim_at = len(data) - 1
    full = {i: e.disclosures for i, e in enumerate(world.entries)}
    true = [read_disclosure(d) for d in full[claim_at]]
    forged = [
        disclose(d.name, "another-job" if d.name == "record_id" else d.value, d.salt) for d in true
    ]
    full[claim_at] = tuple(d.encoded for d in forged)

    def disclosures(start: int, end: int) -> dict[int, tuple[str, ...]]:
        return {i: d for i, d in full.items() if start <= i < end}

    origin = world.state.registry.origin
    assert origin is not None
    cr = merkle.CompactRange(0, [])
    for d in data:
        cr.append(merkle.leaf_hash(d))
    note = sign_note(Checkpoint(origin, cr.size, cr.root()).body(), [world.log])
    bad = verify_log(enumerate(data), note, world.log.verifier, jobs=1, disclosures=disclosures)
    assert bad.first is not None and bad.first.index == claim_at
    assert "record_id" in bad.first.message, bad.first.message
    assert verify_log(enumerate(data), note, world.log.verifier, jobs=1).ok

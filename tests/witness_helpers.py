"""Real logs for witness tests: an RFC 6962 tree in memory, signed C2SP checkpoints, and
forks (same origin and key, different entries from some index on)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.checkpoint import Checkpoint, CosignatureVerifier, sign_checkpoint
from ledger.keys import Signer
from ledger.merkle import CompactRange, NodeId, consistency_proof, leaf_hash, root_at

ORIGIN = "suanli.localhost/chengdu-2023"
LOG_KEY = Signer(ORIGIN, hashlib.sha256(b"suanli witness tests: log key").digest())


def witness_key(name: str) -> Signer:
    return Signer(name, hashlib.sha256(f"suanli witness tests: {name}".encode()).digest())


def cosigner(signer: Signer) -> CosignatureVerifier:
    return CosignatureVerifier.from_signer(signer)


class MemLog:
    """An append-only log in memory, with the store's node layout (``ledger.merkle``)."""

    def __init__(self, signer: Signer = LOG_KEY, entries: Sequence[bytes] = ()) -> None:
        self.signer = signer
        self.entries: list[bytes] = []
        self._range = CompactRange(0, [])
        self._nodes: dict[NodeId, bytes] = {}
        for entry in entries:
            self.append(entry)

    @property
    def size(self) -> int:
        return self._range.size

    def append(self, entry: bytes) -> None:
        self.entries.append(entry)
        self._nodes.update(self._range.append(leaf_hash(entry)))

    def extend(self, n: int, tag: str = "honest") -> MemLog:
        for _ in range(n):
            self.append(f"{tag} entry {self.size}".encode())
        return self

    def fork(self, at: int, tag: str = "fork") -> MemLog:
        """A log with this one's first ``at`` entries (nothing after): same origin and key."""
        return MemLog(self.signer, self.entries[:at]).extend(0, tag)

    def _read(self, ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        return {i: self._nodes[i] for i in ids}

    def root(self, size: int | None = None) -> bytes:
        return root_at(self.size if size is None else size, self._read)

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint at ``size`` (default: now)."""
        n = self.size if size is None else size
        return sign_checkpoint(Checkpoint(self.signer.name, n, self.root(n)), self.signer)

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        return consistency_proof(old, self.size if new is None else new, self._read)


@dataclass
class RunningWitness:
    url: str
    vkey: CosignatureVerifier
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_witness(
    data_dir: Path,
    name: str,
    db: str,
    stderr: Path,
    log_vkey: str = LOG_KEY.verifier.vkey,
    http: str = "127.0.0.1:0",
) -> RunningWitness:
    """Start a witness process (``python -m api.witness serve``) for the log ``log_vkey`` on
    a free port; wait until it prints where it listens."""
    with stderr.open("a") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.witness",
                "serve",
                "--data-dir",
                str(data_dir),
                "--name",
                name,
                "--log",
                log_vkey,
                "--db",
                db,
                "--http",
                http,
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert process.stdout is not None
    printed: dict[str, str] = {}
    while "listening" not in printed:
        line = process.stdout.readline()
        if not line:
            process.wait()
            process.stdout.close()
            pytest.fail(f"the witness exited ({process.returncode}):\n{stderr.read_text()}")
        key, _, value = line.partition(":")
        printed[key.strip()] = value.strip()
    return RunningWitness(
        printed["listening"], CosignatureVerifier.parse(printed["witness key"]), process
    )

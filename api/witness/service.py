"""The witness service: its key, its logs, its store and its clock, in one object.

``WitnessService.add_checkpoint`` is the whole of ``POST /add-checkpoint`` minus HTTP:
parse, read the record, decide (``ledger.witness``), compare-and-swap the new record
(``ledger.store.witness_state``), and decide again if another request changed the record
in between.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import InvalidInput, LedgerError
from ledger.keys import Signer, Verifier
from ledger.store.witness_state import WitnessStateStore
from ledger.witness import (
    Cosigned,
    InconsistentCheckpoint,
    Witness,
    parse_add_checkpoint,
)

log = logging.getLogger("suanli.witness")

KEY_FILE = "witness.key"
DB_FILE = "witness.db"
# A lost compare-and-swap means the record's size grew (a witness never records two roots
# for one size, and an equal record makes the swap succeed), and a grown size turns the
# next decision into a 409. The one longer path: no row -> someone records size 0 -> the
# size grows: three decisions.
_ATTEMPTS = 3


def load_or_create_key(data_dir: Path, name: str | None) -> tuple[Signer, bool]:
    """The witness's Ed25519 key from ``<data_dir>/witness.key``, created 0600 with ``name``
    on first use. Returns (key, created).

    The file holds a C2SP signer key string (``PRIVATE+KEY+name+hex8+base64(0x01 || seed)``,
    as transparency-dev/witness keeps its key): a container for the seed. The key only ever
    signs cosignature/v1 messages; its verifier is published as the type 0x04 vkey.
    """
    path = data_dir / KEY_FILE
    if path.exists():
        signer = Signer.parse(path.read_text().strip())
        if name is not None and name != signer.name:
            raise InvalidInput(
                f"{path} holds the key of {signer.name!r}, not {name!r}: a witness's name is "
                "part of its key ID, so it cannot change without a new key"
            )
        return signer, False
    if name is None:
        raise InvalidInput(
            f"no witness key in {data_dir}: give the witness a name on its first run "
            "(--name, a schema-less URL such as czj.chengdu.gov.cn/witness)"
        )
    signer = Signer.generate(name)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(signer.skey + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return signer, True


def posix_now() -> int:
    return int(time.time())


def origin_hash(origin: str) -> str:
    """The monitoring path's name for a log: lowercase hex SHA-256 of its origin."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


@dataclass
class WitnessService:
    witness: Witness
    store: WitnessStateStore
    clock: Callable[[], int] = posix_now

    def add_checkpoint(self, body: bytes) -> Cosigned:
        """Decide and record one request; raises the refusals of ``ledger.witness``."""
        request = parse_add_checkpoint(body)
        for _ in range(_ATTEMPTS):
            recorded = self.store.get(request.origin)
            state = recorded.state if recorded else None
            try:
                result = self.witness.add_checkpoint(request, state, self.clock())
            except InconsistentCheckpoint:
                # Known origin, valid log signature, inconsistent with what this witness
                # cosigned: possibly a split view. The spec allows keeping it as evidence.
                log.warning(
                    "refused an inconsistent checkpoint for %r (recorded size %d):\n%s",
                    request.origin,
                    state.size if state else 0,
                    request.checkpoint,
                )
                raise
            if self.store.compare_and_swap(request.origin, state, result.state, result.note):
                log.info("cosigned %r at size %d", result.checkpoint.origin, result.checkpoint.size)
                return result
        raise LedgerError(  # unreachable while the reasoning at _ATTEMPTS holds
            f"the record for {request.origin!r} kept changing", reason="WITNESS_BUSY"
        )

    def latest_checkpoint(self, hashed_origin: str) -> str | None:
        """The last cosigned checkpoint (log and witness signatures) of the log whose
        origin hashes to ``hashed_origin``; ``None`` if unknown or never cosigned."""
        for origin in self.witness.logs:
            if origin_hash(origin) == hashed_origin:
                recorded = self.store.get(origin)
                return recorded.note if recorded else None
        return None

    def close(self) -> None:
        self.store.close()


def open_witness(
    data_dir: Path,
    logs: Mapping[str, Sequence[Verifier]],
    *,
    name: str | None = None,
    db: str | None = None,
    clock: Callable[[], int] | None = None,
) -> WitnessService:
    """Wire a witness from its data dir: key (created on first run), store (``db``, or
    SQLite ``witness.db`` in the data dir, created 0600) and the logs it witnesses."""
    signer, _ = load_or_create_key(data_dir, name)
    witness = Witness(signer, logs)  # checks the configuration before opening anything
    store = WitnessStateStore(
        db or f"sqlite:///{(data_dir / DB_FILE).resolve()}", witness.cosigner.key_id
    )
    return WitnessService(witness, store, clock or posix_now)

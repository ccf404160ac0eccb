"""What a fold snapshot states about itself, and how an audit checks it (no storage here).

A snapshot header names a log size, the tree's root at that size, the SHA-256 of the
state's bytes and of the state's money summary, and carries the log key's signature over
all of them. ``ledger.store.snapshots`` stores and loads snapshots; ``ledger.audit`` checks
each header it meets against its own replay (root, signer, summary) without loading the
state's bytes.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from ledger import claims, grants
from ledger.canonical import canonical_bytes
from ledger.projection import summary
from ledger.state import LedgerState

SNAPSHOT_PREFIX = b"suanli-fold-snapshot/v1\n"


@dataclass(frozen=True)
class SnapshotHeader:
    size: int
    root: bytes
    state_sha256: str
    summary_sha256: str
    key_id: str
    signature: bytes

    def message(self, origin: str) -> bytes:
        return snapshot_message(
            origin, self.size, self.root, self.state_sha256, self.summary_sha256
        )


def snapshot_message(
    origin: str, size: int, root: bytes, state_sha256: str, summary_sha256: str
) -> bytes:
    """The bytes the log key signs for a snapshot."""
    return (
        SNAPSHOT_PREFIX
        + (
            f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n{state_sha256}\n{summary_sha256}\n"
        ).encode()
    )


def holds_every_part(state: LedgerState) -> bool:
    """Whether a snapshot's state holds every part this fold keeps: one taken before the
    fold kept the reports' tallies (``ledger.reports``) lacks them wherever a claim or grant
    was paid, and is replayed instead of loaded."""
    paid = claims.book(state).claims or grants.book(state).grants
    return "reports" in state.parts or not paid


def summary_digest(state: LedgerState) -> str:
    """SHA-256 of the state's money summary in canonical JSON: what an audit compares."""
    return hashlib.sha256(canonical_bytes(summary(state))).hexdigest()

"""The centre checks the ledger's log: one history, witnessed, holding its claims.

A centre that only trusts the ledger's answers cannot tell if the ledger shows it one
history and the auditors another. ``check_log`` gives it what transparency logs give their
clients, each step over the ledger's public HTTP API and checked here:

1. the checkpoint ``/checkpoint`` serves is signed by the log key the centre pinned;
2. with a witness policy, it carries the cosignatures of a quorum of the witnesses the
   centre trusts (the finance bureau, the audit office, another centre);
3. it is consistent with the checkpoint the centre checked last (kept in its outbox): the
   log only grew, nothing the centre saw was rewritten;
4. every claim the ledger acknowledged to this centre since the last check and below the
   checkpoint's size is in the tree (an RFC 9162 inclusion proof), and the entry at its
   index carries this centre's own signature over the same voucher and cost.

A failure of any step is a ``LogCheckFailed`` naming what did not hold; nothing is stored
then, so the next check starts again from the last good checkpoint.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from adapters.errors import AgentError
from adapters.outbox import Outbox, Row
from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.entry import Entry
from ledger.errors import LedgerError
from ledger.keys import Verifier
from ledger.tlogpolicy import Policy, require_quorum

LAST_CHECKPOINT = "ledger.checked_checkpoint"  # outbox meta: "size root-base64"
CHECKED_THROUGH = "ledger.checked_seq"  # outbox meta: the last outbox seq proven included


class LogCheckFailed(AgentError):
    """The ledger's log does not hold what it must (a signature, a quorum, consistency or
    an acknowledged claim)."""


@dataclass
class LogCheck:
    size: int
    cosigned_by: frozenset[str] = frozenset()
    previous_size: int | None = None
    claims_proven: int = 0
    claims_waiting: int = 0  # acknowledged, but beyond the checkpoint's size
    notes: list[str] = field(default_factory=list)


def check_log(
    ledger_url: str,
    log_keys: Sequence[Verifier],
    outbox: Outbox,
    centre: str,
    centre_key: Verifier,
    policy: Policy | None = None,
    limit: int = 100_000,
    client: httpx.Client | None = None,
) -> LogCheck:
    """The four checks above; on success, remember the checkpoint and the claims proven."""
    http = client or httpx.Client(base_url=ledger_url.rstrip("/"), timeout=30)
    try:
        note = _get_text(http, "/checkpoint")
        cp = _open(note, log_keys)
        check = LogCheck(cp.size)
        if policy is not None:
            check.cosigned_by = _quorum(note, policy)
        check.previous_size = _consistent(http, outbox, cp)
        proven_seq = _claims_included(http, outbox, centre, centre_key, cp, check, limit)
    finally:
        if client is None:
            http.close()
    outbox.set_meta(LAST_CHECKPOINT, f"{cp.size} {base64.b64encode(cp.root).decode()}")
    if proven_seq is not None:
        outbox.set_meta(CHECKED_THROUGH, str(proven_seq))
    return check


def _get(http: httpx.Client, path: str, **params: Any) -> httpx.Response:
    try:
        response = http.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise AgentError(f"the ledger at {http.base_url} did not answer {path}: {exc}") from exc
    if response.status_code != 200:
        raise LogCheckFailed(f"{path}: the ledger answered {response.status_code}: "
                             f"{response.text[:200]}")  # fmt: skip
    return response


def _get_text(http: httpx.Client, path: str) -> str:
    return _get(http, path).text


def _open(note: str, log_keys: Sequence[Verifier]) -> Checkpoint:
    errors = []
    for key in log_keys:
        try:
            return open_checkpoint(note, key)
        except LedgerError as exc:
            errors.append(f"{key.key_id}: {exc.message}")
    raise LogCheckFailed("the checkpoint is not signed by the pinned log key: " + "; ".join(errors))


def _quorum(note: str, policy: Policy) -> frozenset[str]:
    try:
        return require_quorum(note, policy)
    except LedgerError as exc:
        raise LogCheckFailed(f"witnesses: {exc.message}") from exc


def _consistent(http: httpx.Client, outbox: Outbox, cp: Checkpoint) -> int | None:
    """The size checked last, after proving the new checkpoint extends it."""
    last = outbox.get_meta(LAST_CHECKPOINT)
    if last is None:
        return None
    size_text, _, root_text = last.partition(" ")
    old_size, old_root = int(size_text), base64.b64decode(root_text)
    if cp.size < old_size:
        raise LogCheckFailed(
            f"the ledger now shows a tree of {cp.size} entries; it showed {old_size} before"
        )
    if cp.size == old_size:
        if cp.root != old_root:
            raise LogCheckFailed(f"two different trees of size {cp.size}: a split view")
        return old_size
    answer = _get(http, "/v1/log/proof/consistency", old=old_size, new=cp.size).json()
    proof = [base64.b64decode(h) for h in answer["proof"]]
    try:
        merkle.verify_consistency(old_size, cp.size, proof, old_root, cp.root)
    except LedgerError as exc:
        raise LogCheckFailed(
            f"the tree of {cp.size} does not extend the tree of {old_size} checked before: "
            f"{exc.message}"
        ) from exc
    return old_size


def _claims_included(
    http: httpx.Client,
    outbox: Outbox,
    centre: str,
    centre_key: Verifier,
    cp: Checkpoint,
    check: LogCheck,
    limit: int,
) -> int | None:
    """Prove the claims acknowledged since the last check; the last outbox seq proven."""
    after = int(outbox.get_meta(CHECKED_THROUGH) or 0)
    proven: int | None = None
    for row in outbox.rows(centre):
        if row.seq <= after or row.claimed is None:
            continue
        if row.claimed.log_index >= cp.size or check.claims_proven >= limit:
            check.claims_waiting += 1
            continue
        if check.claims_waiting == 0:  # the watermark only moves over a gap-free prefix
            proven = row.seq
        _prove(http, row, centre_key, cp)
        check.claims_proven += 1
    return proven


def _prove(http: httpx.Client, row: Row, centre_key: Verifier, cp: Checkpoint) -> None:
    assert row.claimed is not None
    index = row.claimed.log_index
    record = row.record
    data = base64.b64decode(_get(http, f"/v1/log/entries/{index}").json()["data"])
    entry = Entry.from_bytes(data)
    mine = [s for s in entry.sigs if s.key == centre_key.key_id]
    if (
        entry.kind not in ("claim", "capture")
        or not mine
        or not centre_key.is_valid(entry.message(), mine[0].sig)
        or entry.body.get("voucher") != record.voucher
        or entry.body.get("cost_fen") != record.cost_fen
    ):
        raise LogCheckFailed(
            f"entry {index}, acknowledged for record {record.record_id}, is not this centre's "
            f"signed claim on voucher {record.voucher} for {record.cost_fen} fen"
        )
    answer = _get(http, "/v1/log/proof/inclusion", index=index, size=cp.size).json()
    proof = [base64.b64decode(h) for h in answer["proof"]]
    try:
        merkle.verify_inclusion(merkle.leaf_hash(data), index, cp.size, proof, cp.root)
    except LedgerError as exc:
        raise LogCheckFailed(
            f"record {record.record_id}: entry {index} is not in the tree of {cp.size}: "
            f"{exc.message}"
        ) from exc

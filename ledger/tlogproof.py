"""Offline inclusion proofs for one log entry in the c2sp.org/tlog-proof@v1 text format.

::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>          (optional, NOT authenticated)
    index <decimal leaf index>
    <base64 hash>                       (zero or more: RFC 6962 2.1.1 inclusion path,
    ...                                  leaf's sibling first, root's child last)
                                        (empty line)
    <signed checkpoint, verbatim>

Decisions:

* Parsing is strict where c2sp.org/tlog-proof is: the index has no leading zeros and
  fits in a uint64, each hash is canonical base64 of exactly 32 bytes (SHA-256), the
  extra data is canonical base64 (``extra `` with nothing after it is empty extra data,
  as transparency-dev/formats writes it). Everything after the first empty line is the
  checkpoint, kept byte for byte; it must end with a newline, as a signed note does.
* ``verify_tlog_proof`` trusts nothing in the proof but what the log key signed: it opens
  the checkpoint first, then checks the inclusion path against the signed root. The
  ``extra`` field is returned by ``parse_tlog_proof`` but never used for verification.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.checkpoint import MAX_UINT64, Checkpoint, open_checkpoint, parse_uint64
from ledger.errors import InvalidInput, VerificationError
from ledger.keys import Verifier, b64decode_canonical
from ledger.note import NoteVerifier

HEADER = "c2sp.org/tlog-proof@v1"
HASH_SIZE = 32  # "one SHA-256 hash per line"


@dataclass(frozen=True)
class TlogProof:
    """A parsed tlog-proof.

    ``index``: zero-based leaf index; ``hashes``: the inclusion path, 32 bytes each;
    ``checkpoint``: the signed checkpoint note, verbatim; ``extra``: opaque unauthenticated
    application data, ``None`` when the line is absent.
    """

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


def _malformed(why: str) -> InvalidInput:
    return InvalidInput(f"malformed tlog-proof: {why}", reason="MALFORMED_TLOG_PROOF")


def format_tlog_proof(p: TlogProof) -> str:
    """The c2sp.org/tlog-proof@v1 text of ``p``."""
    if isinstance(p.index, bool) or not 0 <= p.index <= MAX_UINT64:
        raise _malformed(f"index {p.index!r} is not a uint64")
    for h in p.hashes:
        if len(h) != HASH_SIZE:
            raise _malformed(f"proof hash is {len(h)} bytes, want {HASH_SIZE}")
    if not p.checkpoint.endswith("\n") or p.checkpoint.startswith("\n"):
        raise _malformed("the checkpoint must be a signed note (non-empty, ending in a newline)")
    lines = [HEADER]
    if p.extra is not None:
        lines.append(f"extra {base64.b64encode(p.extra).decode('ascii')}")
    lines.append(f"index {p.index}")
    lines.extend(base64.b64encode(h).decode("ascii") for h in p.hashes)
    return "\n".join(lines) + "\n\n" + p.checkpoint


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse a c2sp.org/tlog-proof@v1 text. Raises ``InvalidInput``; verifies nothing."""
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise _malformed("no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise _malformed(f"first line must be {HEADER!r}")
    rest = lines[1:]
    extra: bytes | None = None
    if rest and rest[0].startswith("extra "):
        try:
            extra = b64decode_canonical(rest[0].removeprefix("extra "), "extra data")
        except InvalidInput as exc:
            raise _malformed(exc.message) from exc
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise _malformed("missing the 'index N' line")
    try:
        index = parse_uint64(rest[0].removeprefix("index "), "index")
        hashes = tuple(b64decode_canonical(line, "proof hash") for line in rest[1:])
    except InvalidInput as exc:
        raise _malformed(exc.message) from exc
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise _malformed(f"proof hash is {len(h)} bytes, want {HASH_SIZE}")
    if not checkpoint.endswith("\n") or checkpoint.startswith("\n"):
        raise _malformed("the checkpoint must be a signed note (non-empty, ending in a newline)")
    return TlogProof(index=index, hashes=hashes, checkpoint=checkpoint, extra=extra)


def verify_tlog_proof(
    text: str,
    entry: bytes,
    log_verifier: Verifier,
    origin: str | None = None,
    *,
    witnesses: Sequence[NoteVerifier] = (),
) -> Checkpoint:
    """Check that ``entry`` is the leaf at the proof's index of the log's signed tree.

    Opens the checkpoint with ``open_checkpoint`` (log signature required, ``origin``
    checked when given, witness signatures checked when present), then verifies the RFC
    9162 inclusion of ``leaf_hash(entry)`` against the checkpoint's root and size. Returns
    the checkpoint. Raises ``VerificationError`` or ``InvalidInput``.
    """
    from ledger.merkle import leaf_hash, verify_inclusion

    proof = parse_tlog_proof(text)
    cp = open_checkpoint(proof.checkpoint, log_verifier, origin, witnesses)
    if proof.index >= cp.size:
        # RFC 9162 2.1.3.2: the index must be below the tree size; said here so that the
        # message does not depend on the Merkle module's wording.
        raise VerificationError(
            f"entry index {proof.index} is not below the checkpoint's tree size {cp.size}"
        )
    verify_inclusion(leaf_hash(entry), proof.index, cp.size, proof.hashes, cp.root)
    return cp

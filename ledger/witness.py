"""Transparency-log witnessing: the witness's decision (c2sp.org/tlog-witness,
``add-checkpoint``) and the verifier's quorum check (c2sp.org/tlog-cosignature).

A witness keeps, per log origin, the size and root of the latest checkpoint it cosigned.
Given an add-checkpoint request (the old size the log believes the witness has, a
consistency proof from there, and the new signed checkpoint) it either cosigns, moving its
record forward, or refuses. Because it only ever cosigns checkpoints consistent with its
record, two forks of one log can never both collect its cosignature: a verifier that wants
a quorum of known witnesses cannot be shown a split view unless a quorum colludes.

Pure code: no I/O, no clock. Durable state lives in ``ledger.store.witness_state`` (compare
and swap), HTTP in ``api.witness``. The refusals are ``LedgerError`` subclasses whose
``kind`` is the one ``api/errors.py`` maps to the status code the spec prescribes:

===================================================  =============================  ======
refusal (c2sp.org/tlog-witness, "add-checkpoint")    class (reason)                 status
===================================================  =============================  ======
request body malformed; old size > checkpoint size   MalformedRequest               400
                                                     (MALFORMED_REQUEST,
                                                     OLD_SIZE_TOO_LARGE)
no trusted log signature, or a trusted key's         LogSignatureRejected           403
signature line fails to verify                       (LOG_SIGNATURE_MISSING,
                                                     LOG_SIGNATURE_INVALID)
checkpoint origin unknown                            UnknownLog (UNKNOWN_LOG)       404
old size is not the size the witness last cosigned   OldSizeConflict                409
(body: that size, ``text/x.tlog.size``)              (OLD_SIZE_MISMATCH)
size 0 without the empty root; proof not empty from  InconsistentCheckpoint         422
old size 0; proof fails; same size, other root       (EMPTY_TREE_ROOT, ...)
===================================================  =============================  ======

Decisions the spec leaves open:

* Checks run in the spec's order: request syntax (400), origin (404), log signature
  (403), checkpoint syntax (400), old size <= new size (400), old size == recorded size
  (409), then the consistency checks (422). The origin is read from the note text before
  the signature is verified only to pick the keys; nothing else in it is trusted first.
* Every signature line whose name and key ID match a trusted log key is verified (the spec
  says any such line that fails means 403), unlike ``ledger.note.open_note``, which follows
  Go in skipping a second line by the same key.
* A proof line must be canonical base64 of exactly 32 bytes (a SHA-256 hash); anything
  else, and more than 63 proof lines, is a malformed request (400), not a bad proof (422).
* A witness that has never cosigned for a known origin behaves as if it had recorded size
  0 with the empty root, which is what the spec's 409 rule ("or zero if it never cosigned")
  implies.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledger.checkpoint import (
    HASH_SIZE,
    Checkpoint,
    CosignatureVerifier,
    cosign,
    cosignature_timestamp,
    parse_checkpoint,
    parse_uint64,
)
from ledger.errors import (
    Conflict,
    Denied,
    InvalidInput,
    NotFound,
    Refused,
    VerificationError,
)
from ledger.keys import Signer, Verifier, b64decode_canonical
from ledger.merkle import EMPTY_ROOT, verify_consistency
from ledger.note import SIG_PREFIX, Note, NoteSignature, open_note, parse_note

MAX_PROOF_LINES = 63  # c2sp.org/tlog-witness: "The client MUST NOT send more than 63"
SIZE_CONTENT_TYPE = "text/x.tlog.size"  # the 409 body's media type
_OLD_LINE = re.compile(r"old ([0-9]+)")


# --- refusals --------------------------------------------------------------------------------


class MalformedRequest(InvalidInput):
    """400: the add-checkpoint body does not follow the spec's syntax, or the old size is
    larger than the checkpoint's size."""

    reason = "MALFORMED_REQUEST"


class LogSignatureRejected(Denied):
    """403: no valid signature by a key the witness trusts for the origin, or a line that
    names a trusted key carries a signature that does not verify."""

    reason = "LOG_SIGNATURE_INVALID"


class UnknownLog(NotFound):
    """404: the witness is not configured for the checkpoint's origin."""

    reason = "UNKNOWN_LOG"


class OldSizeConflict(Conflict):
    """409: the request's old size is not the size of the latest checkpoint the witness
    cosigned for the origin. ``latest_size`` is that size (0 if it never cosigned): the
    client retries from there, with a consistency proof from ``latest_size``."""

    reason = "OLD_SIZE_MISMATCH"

    def __init__(self, origin: str, old_size: int, latest_size: int) -> None:
        super().__init__(
            f"old size {old_size} is not {latest_size}, the size of the latest checkpoint "
            f"this witness cosigned for {origin!r}",
            details={"origin": origin, "old_size": old_size, "latest_size": latest_size},
        )
        self.latest_size = latest_size

    def body(self) -> str:
        """The 409 response body: the latest size in decimal and a newline."""
        return f"{self.latest_size}\n"


class InconsistentCheckpoint(Refused):
    """422: the checkpoint is not consistent with what the witness cosigned before (or a
    size-0 checkpoint does not have the empty root). A split view ends here."""

    reason = "INCONSISTENT_CHECKPOINT"


class QuorumNotMet(VerificationError):
    """A checkpoint lacks the cosignatures a verifier's policy requires."""

    reason = "WITNESS_QUORUM_NOT_MET"


# --- the add-checkpoint request ------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed ``POST <prefix>/add-checkpoint`` body.

    ``old_size``: the size of the checkpoint the client believes the witness last cosigned;
    ``proof``: RFC 6962 consistency proof hashes from ``old_size`` to the new size;
    ``checkpoint``: the signed checkpoint note, as sent (it may carry several signatures);
    ``note``: the same, parsed (text and signature lines, nothing verified);
    ``origin``: the note text's first line, used only to pick the log's keys.
    """

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str
    note: Note
    origin: str

    def body(self) -> bytes:
        return format_add_checkpoint(self.old_size, self.proof, self.checkpoint)


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], signed_checkpoint: str) -> bytes:
    """The request body: ``old N``, one base64 hash per line, an empty line, the checkpoint."""
    if isinstance(old_size, bool) or not isinstance(old_size, int) or old_size < 0:
        raise MalformedRequest(f"old size {old_size!r} is not a uint64")
    if len(proof) > MAX_PROOF_LINES:
        raise MalformedRequest(f"{len(proof)} consistency proof lines, at most 63 are allowed")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return ("".join(f"{line}\n" for line in lines) + "\n" + signed_checkpoint).encode("utf-8")


def _malformed(why: str, reason: str = "MALFORMED_REQUEST") -> MalformedRequest:
    return MalformedRequest(f"malformed add-checkpoint request: {why}", reason=reason)


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse an add-checkpoint body. Raises ``MalformedRequest`` (400) for any deviation
    from the spec's syntax, including a note that is not a well-formed signed note."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("the body is not UTF-8") from exc
    # The header lines are never empty, so the first empty line ends them; the checkpoint
    # after it has an empty line of its own (before its signatures).
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise _malformed("no empty line between the old size and proof lines and the checkpoint")
    old_line, *proof_lines = head.split("\n")
    match = _OLD_LINE.fullmatch(old_line)
    if match is None:
        raise _malformed(f"the first line {old_line[:40]!r} is not 'old <size>'")
    try:
        old_size = parse_uint64(match.group(1), "old size")
    except InvalidInput as exc:
        raise _malformed(exc.message) from exc
    if len(proof_lines) > MAX_PROOF_LINES:
        raise _malformed(f"{len(proof_lines)} consistency proof lines, at most 63 are allowed")
    proof: list[bytes] = []
    for i, line in enumerate(proof_lines):
        try:
            digest = b64decode_canonical(line, f"proof line {i + 1}")
        except InvalidInput as exc:
            raise _malformed(exc.message) from exc
        if len(digest) != HASH_SIZE:
            raise _malformed(f"proof line {i + 1} is {len(digest)} bytes, want a 32-byte hash")
        proof.append(digest)
    try:
        note = parse_note(checkpoint)
    except InvalidInput as exc:
        raise _malformed(exc.message) from exc
    origin = note.text.split("\n", 1)[0]
    if not origin:
        raise _malformed("the checkpoint's origin line is empty")
    return AddCheckpointRequest(old_size, tuple(proof), checkpoint, note, origin)


# --- the witness's decision ------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessState:
    """What a witness recorded for one log: the latest checkpoint it cosigned."""

    size: int
    root: bytes


@dataclass(frozen=True)
class Cosigned:
    """The witness's yes: its new record, and what it answers.

    ``state``: the new (size, root) to store, by compare-and-swap against the record the
    decision was made on; ``checkpoint``: the checkpoint cosigned; ``cosignature``: the
    witness's cosignature/v1 signature; ``log_signatures``: the log signature lines that
    verified; ``note``: checkpoint text, those log signatures and the cosignature, which is
    what the witness serves to monitors (c2sp.org/tlog-witness, "Monitor Retrieval").
    """

    state: WitnessState
    checkpoint: Checkpoint
    cosignature: NoteSignature
    log_signatures: tuple[NoteSignature, ...]

    @property
    def note(self) -> str:
        lines = (*self.log_signatures, self.cosignature)
        return self.checkpoint.body() + "\n" + "".join(s.line() for s in lines)

    def response(self) -> str:
        """The 200 body: the cosignature line(s), each ending in a newline."""
        return self.cosignature.line()


def logs_by_origin(keys: Iterable[Verifier]) -> dict[str, tuple[Verifier, ...]]:
    """Group log keys by key name, which c2sp.org/tlog-policy says is the log's origin.
    Several keys for one origin are the log's key rotation: any of them may sign."""
    by_origin: dict[str, list[Verifier]] = {}
    for key in keys:
        by_origin.setdefault(key.name, []).append(key)
    return {origin: tuple(ks) for origin, ks in by_origin.items()}


class Witness:
    """A witness's identity and configuration: its cosigning key and the logs it accepts.

    ``signer``: the witness's Ed25519 key; its name is the cosigner name in every line.
    ``logs``: origin -> the log keys trusted for that origin (``logs_by_origin``).
    """

    def __init__(self, signer: Signer, logs: Mapping[str, Sequence[Verifier]]) -> None:
        for origin, keys in logs.items():
            if not keys:
                raise InvalidInput(f"log {origin!r} is configured without a key")
            ids = [(k.name, k.hash) for k in keys]
            if len(set(ids)) != len(ids):
                # Two keys with one (name, key ID) could not be told apart in a signature line.
                raise InvalidInput(f"log {origin!r} has two keys with the same name and ID")
        self.signer = signer
        self.cosigner = CosignatureVerifier.from_signer(signer)
        self.logs = {origin: tuple(keys) for origin, keys in logs.items()}

    def add_checkpoint(
        self, request: AddCheckpointRequest, recorded: WitnessState | None, now: int
    ) -> Cosigned:
        """Decide one add-checkpoint request against the ``recorded`` state for its origin
        (``None``: never cosigned), cosigning with timestamp ``now`` (POSIX seconds, > 0).

        Returns ``Cosigned`` or raises one of this module's refusals. The caller must store
        ``Cosigned.state`` atomically *only if* the record is still ``recorded`` (compare
        and swap), and decide again if it is not: see ``ledger.store.witness_state``.
        """
        if isinstance(now, bool) or not 0 < now < 2**63:
            # c2sp.org/tlog-witness: "the timestamp MUST NOT be zero".
            raise InvalidInput(f"cosignature timestamp {now!r} must be a positive POSIX time")
        keys = self.logs.get(request.origin)
        if keys is None:
            raise UnknownLog(
                f"this witness does not witness the log {request.origin!r}",
                details={"origin": request.origin},
            )
        log_signatures = _verify_log_signatures(request, keys)
        # Only now is the text trusted enough to parse (c2sp.org/signed-note).
        try:
            cp = parse_checkpoint(request.note.text)
        except InvalidInput as exc:
            raise _malformed(exc.message) from exc
        sizes = {"origin": cp.origin, "old_size": request.old_size, "size": cp.size}
        if request.old_size > cp.size:
            raise _malformed(
                f"old size {request.old_size} is larger than the checkpoint size {cp.size}",
                reason="OLD_SIZE_TOO_LARGE",
            )
        latest = recorded or WitnessState(0, EMPTY_ROOT)
        if request.old_size != latest.size:
            raise OldSizeConflict(cp.origin, request.old_size, latest.size)
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            raise InconsistentCheckpoint(
                "a checkpoint of size 0 must have the empty tree's root, SHA-256('')",
                reason="EMPTY_TREE_ROOT",
                details=sizes,
            )
        # The three ways a checkpoint can fail to extend the record; with equal sizes
        # verify_consistency demands an empty proof and equal roots.
        if request.old_size == 0:
            if request.proof:
                raise InconsistentCheckpoint(
                    "the consistency proof from size 0 must be empty",
                    reason="PROOF_FROM_EMPTY_TREE",
                    details=sizes,
                )
        elif request.old_size == cp.size and cp.root != latest.root:
            raise InconsistentCheckpoint(
                f"this witness cosigned another root for size {cp.size} of {cp.origin!r}",
                reason="ROOT_MISMATCH",
                details=sizes,
            )
        else:
            try:
                verify_consistency(request.old_size, cp.size, request.proof, latest.root, cp.root)
            except (VerificationError, InvalidInput) as exc:
                raise InconsistentCheckpoint(
                    f"the checkpoint of size {cp.size} is not consistent with the one of size "
                    f"{latest.size} this witness cosigned: {exc.message}",
                    reason="BAD_CONSISTENCY_PROOF",
                    details=sizes,
                ) from exc
        return Cosigned(
            state=WitnessState(cp.size, cp.root),
            checkpoint=cp,
            cosignature=cosign(request.note.text, self.signer, now),
            log_signatures=log_signatures,
        )


def _verify_log_signatures(
    request: AddCheckpointRequest, keys: Sequence[Verifier]
) -> tuple[NoteSignature, ...]:
    by_id = {(k.name, k.hash): k for k in keys}
    message = request.note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    for sig in request.note.signatures:
        key = by_id.get((sig.name, sig.key_hash))
        if key is None:
            continue  # "it MUST ignore signatures from unknown keys"
        try:
            key.verify(message, sig.signature)
        except VerificationError as exc:
            raise LogSignatureRejected(
                f"the signature of {sig.key_id} on the checkpoint does not verify",
                details={"origin": request.origin, "key": sig.key_id},
            ) from exc
        if sig not in verified:
            verified.append(sig)
    if not verified:
        raise LogSignatureRejected(
            f"the checkpoint carries no signature by a key trusted for {request.origin!r} "
            f"({', '.join(k.key_id for k in keys)})",
            reason="LOG_SIGNATURE_MISSING",
            details={"origin": request.origin},
        )
    return tuple(verified)


# --- the log's side: the witness's answer ----------------------------------------------------


def parse_cosignature_lines(text: str) -> list[NoteSignature]:
    """A 200 add-checkpoint body: one or more note signature lines, each ``— `` ... ``\\n``.
    Raises ``InvalidInput`` if it is anything else."""
    if not text.endswith("\n") or not text.startswith(SIG_PREFIX):
        raise InvalidInput(
            "a witness's answer must be signature lines starting with '— ' and ending in '\\n'",
            reason="MALFORMED_COSIGNATURE",
        )
    if "\n\n" in text:
        raise InvalidInput("a witness's answer has an empty line", reason="MALFORMED_COSIGNATURE")
    # parse_note checks the signature lines' syntax (key name, canonical base64, sizes), so
    # give it the lines as the signature block of a note with a dummy text.
    try:
        return list(parse_note("x\n\n" + text).signatures)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, reason="MALFORMED_COSIGNATURE") from exc


def merge_cosignatures(
    signed_checkpoint: str,
    cosignature_lines: Iterable[str],
    witnesses: Sequence[CosignatureVerifier],
) -> str:
    """``signed_checkpoint`` with the cosignatures of known ``witnesses`` added.

    ``cosignature_lines``: witnesses' answers as ``api.witness.client.submit_checkpoint``
    returns them (each string one or more ``— name base64\\n`` lines; malformed ones raise
    ``InvalidInput``).

    What a log does with witnesses' answers before serving its checkpoint: lines by
    unknown keys are dropped (c2sp.org/tlog-witness: "The client MUST ignore any
    cosignatures from unknown keys"), a line by a known witness that does not verify over
    this checkpoint raises ``VerificationError``, and a witness whose line is already in
    the note is not added again (its first cosignature stays).
    """
    note = parse_note(signed_checkpoint)
    message = note.text.encode("utf-8")
    known = {(w.name, w.hash): w for w in witnesses}
    present = {(s.name, s.key_hash) for s in note.signatures}
    added: list[NoteSignature] = []
    for sig in (sig for text in cosignature_lines for sig in parse_cosignature_lines(text)):
        witness = known.get((sig.name, sig.key_hash))
        if witness is None or (sig.name, sig.key_hash) in present:
            continue
        try:
            witness.verify(message, sig.signature)
        except VerificationError as exc:
            raise VerificationError(
                f"the cosignature of {witness.key_id} does not verify over this checkpoint",
                reason="INVALID_COSIGNATURE",
                details={"witness": witness.key_id},
            ) from exc
        present.add((sig.name, sig.key_hash))
        added.append(sig)
    return signed_checkpoint + "".join(s.line() for s in added)


# --- the verifier's side: demanding a quorum -------------------------------------------------


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: which witness, and the POSIX time it states it cosigned."""

    witness: CosignatureVerifier
    timestamp: int


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A checkpoint verified against its log key, with the cosignatures of known witnesses
    that verified, in the order of the witnesses given."""

    checkpoint: Checkpoint
    cosignatures: tuple[Cosignature, ...]

    @property
    def cosigners(self) -> tuple[CosignatureVerifier, ...]:
        return tuple(c.witness for c in self.cosignatures)


def check_distinct_witnesses(witnesses: Sequence[CosignatureVerifier]) -> None:
    """Refuse two witness keys that wrap one public key (c2sp.org/tlog-policy: duplicates).

    A cosignature/v1 message does not commit to the cosigner's name, so one key listed
    under two names would let one witness's signature count twice towards a quorum.
    """
    seen: dict[bytes, str] = {}
    for w in witnesses:
        if w.public in seen:
            raise InvalidInput(
                f"witness keys {seen[w.public]} and {w.key_id} are the same public key",
                reason="DUPLICATE_WITNESS_KEY",
            )
        seen[w.public] = w.key_id


def verify_cosignatures(
    signed_checkpoint: str | bytes,
    *,
    log_keys: Sequence[Verifier],
    witnesses: Sequence[CosignatureVerifier],
    origin: str | None = None,
) -> WitnessedCheckpoint:
    """Verify a checkpoint's log signature (any of ``log_keys``) and every cosignature by a
    known witness; count none. Raises ``VerificationError`` if no log key signed, a known
    key's line fails (c2sp.org/signed-note: SHOULD reject the whole note), or the origin is
    not ``origin``; ``InvalidInput`` for a malformed note or duplicate witness keys."""
    if not log_keys:
        raise InvalidInput("verifying a checkpoint needs at least one log key")
    check_distinct_witnesses(witnesses)
    note, verified, _unknown = open_note(signed_checkpoint, [*log_keys, *witnesses])
    log_ids = {(k.name, k.hash) for k in log_keys}
    if not any((s.name, s.key_hash) in log_ids for s in verified):
        raise VerificationError(
            "checkpoint is not signed by the log key " + " or ".join(k.key_id for k in log_keys),
            reason="NO_LOG_SIGNATURE",
        )
    # Only now is the text trusted enough to parse (c2sp.org/signed-note).
    cp = parse_checkpoint(note.text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the expected {origin!r}",
            reason="WRONG_ORIGIN",
        )
    by_id = {(s.name, s.key_hash): s for s in verified}
    cosignatures = tuple(
        Cosignature(w, cosignature_timestamp(by_id[(w.name, w.hash)].signature))
        for w in witnesses
        if (w.name, w.hash) in by_id
    )
    return WitnessedCheckpoint(cp, cosignatures)


def require_cosignatures(
    signed_checkpoint: str | bytes,
    witnesses: Sequence[CosignatureVerifier],
    quorum: int,
    *,
    log_keys: Sequence[Verifier],
    origin: str | None = None,
) -> WitnessedCheckpoint:
    """Verify a checkpoint and demand cosignatures from at least ``quorum`` of the known
    ``witnesses`` (k of n; ``ledger.tlogpolicy`` has the general groups of tlog-policy).

    Returns the checkpoint and which witnesses cosigned. Raises ``QuorumNotMet`` naming who
    cosigned and who did not when fewer than ``quorum`` did; ``InvalidInput`` if ``quorum``
    is not in 0..len(witnesses); see ``verify_cosignatures`` for the rest.
    """
    if isinstance(quorum, bool) or not 0 <= quorum <= len(witnesses):
        raise InvalidInput(
            f"quorum {quorum!r} must be between 0 and the {len(witnesses)} known witnesses",
            reason="BAD_QUORUM",
        )
    seen = verify_cosignatures(
        signed_checkpoint, log_keys=log_keys, witnesses=witnesses, origin=origin
    )
    if len(seen.cosignatures) < quorum:
        cosigned = [w.key_id for w in seen.cosigners]
        missing = [w.key_id for w in witnesses if w not in seen.cosigners]
        cp = seen.checkpoint
        raise QuorumNotMet(
            f"checkpoint {cp.origin!r} at size {cp.size} is cosigned by {len(cosigned)} of the "
            f"{len(witnesses)} known witnesses ({', '.join(cosigned) or 'none'}); {quorum} "
            f"required; no cosignature from {', '.join(missing)}",
            details={
                "quorum": quorum,
                "cosigned": ",".join(cosigned),
                "missing": ",".join(missing),
                "size": cp.size,
            },
        )
    return seen

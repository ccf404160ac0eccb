"""The witness's decision and the verifier's quorum (``ledger.witness``), pure.

Byte formats come from the specs as published (C2SP tlog-witness.md, tlog-cosignature.md;
the copies in ../shared/specs/c2sp/) and from one vector file, with provenance in its
``sources`` block:

* ``tests/vectors/tlog-cosignature/cosignature_v1_vectors.json``: a real checkpoint of the
  public log arche2025h1.staging.ct.transparency.dev with four witnesses' cosignatures,
  from github.com/florolf/tlog-scales ``tests/test_signing.py`` (Apache-2.0); cosigner key
  and timestamp cases from github.com/transparency-dev/formats
  ``note/note_cosigv1_test.go`` (Apache-2.0).

Logs here are real RFC 6962 trees (``witness_helpers.MemLog``) with signed checkpoints.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import itertools
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from witness_helpers import LOG_KEY, ORIGIN, MemLog, cosigner, witness_key

from ledger.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    cosign_checkpoint,
    cosignature_timestamp,
    sign_checkpoint,
)
from ledger.errors import InvalidInput, VerificationError
from ledger.keys import Signer, Verifier
from ledger.merkle import EMPTY_ROOT
from ledger.note import NoteSignature, parse_note, sign_note
from ledger.witness import (
    AddCheckpointRequest,
    InconsistentCheckpoint,
    LogSignatureRejected,
    MalformedRequest,
    OldSizeConflict,
    QuorumNotMet,
    UnknownLog,
    Witness,
    WitnessState,
    format_add_checkpoint,
    logs_by_origin,
    merge_cosignatures,
    parse_add_checkpoint,
    parse_cosignature_lines,
    require_cosignatures,
    verify_cosignatures,
)

VECTORS = json.loads(
    (
        Path(__file__).parent / "vectors" / "tlog-cosignature" / "cosignature_v1_vectors.json"
    ).read_text("utf-8")
)
W1 = witness_key("czj.chengdu.example/witness")  # 财政局
W2 = witness_key("sjj.chengdu.example/witness")  # 审计局
W3 = witness_key("nscc-cd.example/witness")  # a centre
LOGS = logs_by_origin([LOG_KEY.verifier])
NOW = 1_700_000_000


def witness(signer: Signer = W1) -> Witness:
    return Witness(signer, LOGS)


def request(
    log: MemLog, old: int, size: int | None = None, proof: list[bytes] | None = None
) -> AddCheckpointRequest:
    n = log.size if size is None else size
    body = format_add_checkpoint(
        old, log.proof(old, n) if proof is None else proof, log.checkpoint(n)
    )
    return parse_add_checkpoint(body)


def cosign_all(w: Witness, log: MemLog, sizes: list[int]) -> WitnessState | None:
    state: WitnessState | None = None
    for n in sizes:
        state = w.add_checkpoint(request(log, state.size if state else 0, n), state, NOW).state
    return state


# --- byte formats from the specs -------------------------------------------------------------

# c2sp.org/tlog-witness, "add-checkpoint": the example request body, byte for byte.
SPEC_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhc"
    "yv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— example.com/behind-the-sofa "
    "opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/"
    "V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
)
# c2sp.org/tlog-witness: the example response body (three signature lines, two witnesses).
SPEC_RESPONSE = (
    "— witness.example/w1 "
    "CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39Q"
    "sZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n"
    "— witness.example/w1 "
    "I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlb"
    "QNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n"
    "— witness.example/w2 "
    "AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZ"
    "grrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n"
)


def test_spec_example_request_parses_and_formats_back_byte_for_byte() -> None:
    req = parse_add_checkpoint(SPEC_REQUEST.encode())
    assert req.old_size == 20852014
    assert len(req.proof) == 4
    assert base64.b64encode(req.proof[0]).decode() == "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw="
    assert req.origin == "example.com/behind-the-sofa"
    assert len(req.note.signatures) == 2  # "The submitted checkpoint MAY include multiple"
    assert req.body() == SPEC_REQUEST.encode()
    assert format_add_checkpoint(req.old_size, req.proof, req.checkpoint) == SPEC_REQUEST.encode()


def test_spec_example_request_is_an_unknown_log_here() -> None:
    with pytest.raises(UnknownLog) as exc:
        witness().add_checkpoint(parse_add_checkpoint(SPEC_REQUEST.encode()), None, NOW)
    assert exc.value.kind == "not_found"


def test_spec_example_response_parses() -> None:
    sigs = parse_cosignature_lines(SPEC_RESPONSE)
    assert [s.name for s in sigs] == [
        "witness.example/w1",
        "witness.example/w1",
        "witness.example/w2",
    ]
    assert "".join(s.line() for s in sigs) == SPEC_RESPONSE


def test_old_size_zero_with_no_proof_lines_is_old_line_then_empty_line() -> None:
    log = MemLog().extend(3)
    body = format_add_checkpoint(0, [], log.checkpoint())
    assert body == b"old 0\n\n" + log.checkpoint().encode()


def test_cosignature_line_is_byte_exact_per_tlog_cosignature() -> None:
    """Checked with the raw primitives, not with ledger.checkpoint's verifier."""
    log = MemLog().extend(7)
    result = witness().add_checkpoint(request(log, 0), None, 1679315147)
    line = result.response()
    assert line.startswith("— czj.chengdu.example/witness ") and line.endswith("\n")
    assert line.count("\n") == 1
    raw = base64.b64decode(line.split(" ")[2])
    public = W1.verifier.public
    want_id = hashlib.sha256(W1.name.encode() + b"\n" + b"\x04" + public).digest()[:4]
    assert raw[:4] == want_id  # key ID with signature type 0x04
    assert len(raw) == 4 + 8 + 64  # key ID, u64 timestamp, Ed25519 signature
    assert struct.unpack(">Q", raw[4:12])[0] == 1679315147  # big-endian timestamp
    body = log.checkpoint().split("\n\n")[0] + "\n"
    message = b"cosignature/v1\ntime 1679315147\n" + body.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)  # raises if not
    # The vkey: type 0x04, the same key hash.
    vkey = cosigner(W1).vkey
    assert vkey.split("+")[1] == want_id.hex()
    assert base64.b64decode(vkey.split("+", 2)[2]) == b"\x04" + public


def test_monitoring_note_has_log_signature_then_cosignature() -> None:
    log = MemLog().extend(4)
    result = witness().add_checkpoint(request(log, 0), None, NOW)
    note = parse_note(result.note)
    assert note.text == Checkpoint(ORIGIN, 4, log.root()).body()
    assert [s.name for s in note.signatures] == [ORIGIN, W1.name]
    assert result.note == log.checkpoint() + result.response()


# --- vectors from other implementations ------------------------------------------------------


def test_real_checkpoint_cosigned_by_a_public_witness_verifies() -> None:
    real = VECTORS["real_checkpoint"]
    log_key = Verifier.parse(real["log_vkey"])
    remora = CosignatureVerifier.parse(real["witness_vkey"])
    seen = require_cosignatures(real["note"], [remora], 1, log_keys=[log_key])
    assert seen.checkpoint.size == real["want_size"]
    assert seen.cosigners == (remora,)
    line = next(s for s in parse_note(real["note"]).signatures if s.name == remora.name)
    assert seen.cosignatures[0].timestamp == cosignature_timestamp(line.signature)
    # The other witnesses' lines are unknown keys here, ignored; the log's 0x05 line too.
    # One changed byte in the checkpoint text and the cosignature no longer verifies.
    altered = real["note"].replace("\n1432088532\n", "\n1432088533\n")
    with pytest.raises(VerificationError):
        verify_cosignatures(altered, log_keys=[log_key], witnesses=[remora])


def test_real_witness_counts_towards_a_quorum_only_once() -> None:
    real = VECTORS["real_checkpoint"]
    remora = CosignatureVerifier.parse(real["witness_vkey"])
    other = cosigner(W2)
    with pytest.raises(QuorumNotMet, match=r"1 of the 2 known witnesses.*sjj\.chengdu"):
        require_cosignatures(
            real["note"], [remora, other], 2, log_keys=[Verifier.parse(real["log_vkey"])]
        )


def test_native_cosigner_vkey_round_trips_with_its_key_hash() -> None:
    vkey = VECTORS["native_cosigner_vkey"]
    parsed = CosignatureVerifier.parse(vkey)
    assert parsed.vkey == vkey
    assert f"{parsed.hash:08x}" == "da77ade7"


@pytest.mark.parametrize("case", VECTORS["timestamp_cases"], ids=lambda c: c["desc"][:20])
def test_cosignature_timestamp_vectors(case: dict[str, object]) -> None:
    raw = base64.b64decode(str(case["signature_b64"]))
    signature = raw[4:]  # after the key ID
    if case.get("want_error"):
        # Not a timestamped signature: a cosigner key rejects it as a signature.
        with pytest.raises(VerificationError, match="not 72 bytes"):
            cosigner(W1).verify(b"o\n1\n" + b"A" * 44 + b"\n", signature)
    else:
        assert cosignature_timestamp(signature) == case["want_timestamp"]


# --- the witness cosigns a growing log -------------------------------------------------------


def test_witness_cosigns_a_growing_log_from_the_empty_tree() -> None:
    w = witness()
    log = MemLog()
    state: WitnessState | None = None
    for grow in (0, 1, 1, 3, 3, 0, 8, 112):
        log.extend(grow)
        old = state.size if state else 0
        result = w.add_checkpoint(request(log, old), state, NOW + log.size)
        assert result.state == WitnessState(log.size, log.root())
        cosigned = log.checkpoint() + result.response()
        seen = require_cosignatures(cosigned, [cosigner(W1)], 1, log_keys=[LOG_KEY.verifier])
        assert seen.checkpoint.size == log.size
        assert seen.cosignatures[0].timestamp == NOW + log.size
        state = result.state
    assert state == WitnessState(128, log.root())


def test_same_checkpoint_again_is_cosigned_again_with_a_new_timestamp() -> None:
    w = witness()
    log = MemLog().extend(5)
    first = w.add_checkpoint(request(log, 0), None, NOW)
    again = w.add_checkpoint(request(log, 5), first.state, NOW + 60)
    assert again.state == first.state
    assert cosignature_timestamp(again.cosignature.signature) == NOW + 60


def test_unknown_signatures_in_the_request_are_ignored() -> None:
    log = MemLog().extend(5)
    stranger = Signer("stranger.example/key", b"\x07" * 32)
    checkpoint = cosign_checkpoint(log.checkpoint(), W2, NOW)  # another witness's line
    checkpoint += sign_note(Checkpoint(ORIGIN, 5, log.root()).body(), [stranger]).split("\n\n")[1]
    req = parse_add_checkpoint(format_add_checkpoint(0, [], checkpoint))
    result = witness().add_checkpoint(req, None, NOW)
    assert [s.name for s in parse_note(result.note).signatures] == [ORIGIN, W1.name]


def test_log_key_rotation_either_key_may_sign() -> None:
    new_key = Signer(ORIGIN, hashlib.sha256(b"rotated log key").digest())
    w = Witness(W1, logs_by_origin([LOG_KEY.verifier, new_key.verifier]))
    old_log = MemLog().extend(3)
    state = w.add_checkpoint(request(old_log, 0), None, NOW).state
    rotated = MemLog(new_key, old_log.entries).extend(2)
    assert w.add_checkpoint(request(rotated, 3), state, NOW).state.size == 5


def test_extension_lines_are_cosigned_but_not_recorded() -> None:
    log = MemLog().extend(2)
    cp = sign_checkpoint(Checkpoint(ORIGIN, 2, log.root(), ("extra line",)), LOG_KEY)
    result = witness().add_checkpoint(
        parse_add_checkpoint(format_add_checkpoint(0, [], cp)), None, NOW
    )
    assert result.state == WitnessState(2, log.root())
    verify_cosignatures(
        cp + result.response(), log_keys=[LOG_KEY.verifier], witnesses=[cosigner(W1)]
    )
    plain = log.checkpoint() + result.response()  # without the extension: not what was signed
    with pytest.raises(VerificationError):
        verify_cosignatures(plain, log_keys=[LOG_KEY.verifier], witnesses=[cosigner(W1)])


def test_timestamp_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="positive"):
        witness().add_checkpoint(request(MemLog().extend(1), 0), None, 0)


def test_configuration_refuses_a_log_without_keys() -> None:
    with pytest.raises(InvalidInput, match="without a key"):
        Witness(W1, {ORIGIN: ()})


# --- every refusal, with the spec's status -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "no empty line"),
        (b"old 0\n", "no empty line"),
        (b"old 01\n\n", "leading zeros"),
        (b"old -1\n\n", "'old <size>'"),
        (b"Old 1\n\n", "'old <size>'"),
        (b"old  1\n\n", "'old <size>'"),
        (b"old 1 \n\n", "'old <size>'"),
        (b"old 18446744073709551616\n\n", "64 bits"),
        (b"old 1\r\n\r\n", "no empty line"),
        (b"old 1\r\n\n", "'old <size>'"),
        (b"\nold 1\n\n", "'old <size>'"),
        (b"old 1\nAAAA\n\n", "32-byte hash"),
        (b"old 1\n" + b"A" * 43 + b"\n\n", "base64"),
        (b"old 1\nnot base64!\n\n", "base64"),
        (
            b"old 1\n" + b"".join(base64.b64encode(bytes(32)) + b"\n" for _ in range(64)) + b"\n",
            "63",
        ),
        (b"old 0\n\n\xff\n", "UTF-8"),
        (b"old 0\n\nno signatures\n", "no blank line"),
        (b"old 0\n\no\n1\nAAAA\n\n", "no signature lines"),
        (b"old 0\n\n\n0\nAAAA\n\n\xe2\x80\x94 k AAAAAAA=\n", "origin line is empty"),
    ],
)
def test_malformed_requests_are_400(body: bytes, why: str) -> None:
    with pytest.raises(MalformedRequest, match=why) as exc:
        witness().add_checkpoint(parse_add_checkpoint(body), None, NOW)
    assert exc.value.kind == "invalid"


def test_63_proof_lines_are_allowed() -> None:
    body = b"old 1\n" + b"".join(base64.b64encode(bytes(32)) + b"\n" for _ in range(63)) + b"\n"
    body += MemLog().extend(1).checkpoint().encode()
    assert len(parse_add_checkpoint(body).proof) == 63


def test_unknown_origin_is_404_before_the_signature_is_looked_at() -> None:
    other = Signer("other.example/log", bytes(32))
    cp = sign_checkpoint(Checkpoint(other.name, 1, bytes(32)), other)
    with pytest.raises(UnknownLog, match=r"other\.example/log"):
        witness().add_checkpoint(parse_add_checkpoint(format_add_checkpoint(0, [], cp)), None, NOW)


def test_checkpoint_signed_only_by_an_untrusted_key_is_403() -> None:
    impostor = Signer(ORIGIN, hashlib.sha256(b"not the log's key").digest())
    log = MemLog(impostor).extend(3)
    with pytest.raises(LogSignatureRejected, match="no signature by a key trusted") as exc:
        witness().add_checkpoint(request(log, 0), None, NOW)
    assert (exc.value.reason, exc.value.kind) == ("LOG_SIGNATURE_MISSING", "denied")


def test_bad_signature_of_a_trusted_key_is_403_even_after_a_good_one() -> None:
    log = MemLog().extend(3)
    good = log.checkpoint()
    sig = parse_note(good).signatures[0]
    bad = NoteSignature(sig.name, sig.key_hash, bytes(64)).line()
    for cp in (good.replace(sig.line(), bad), good + bad):
        req = parse_add_checkpoint(format_add_checkpoint(0, [], cp))
        with pytest.raises(LogSignatureRejected, match="does not verify") as exc:
            witness().add_checkpoint(req, None, NOW)
        assert exc.value.reason == "LOG_SIGNATURE_INVALID"


def test_signed_but_malformed_checkpoint_text_is_400() -> None:
    text = f"{ORIGIN}\n01\n{base64.b64encode(bytes(32)).decode()}\n"
    cp = sign_note(text, [LOG_KEY])
    with pytest.raises(MalformedRequest, match="leading zeros"):
        witness().add_checkpoint(parse_add_checkpoint(format_add_checkpoint(0, [], cp)), None, NOW)


def test_old_size_larger_than_checkpoint_is_400() -> None:
    log = MemLog().extend(5)
    state = cosign_all(witness(), log, [5])
    with pytest.raises(MalformedRequest, match="larger than the checkpoint size") as exc:
        witness().add_checkpoint(request(log, 5, 3, proof=[]), state, NOW)
    assert exc.value.reason == "OLD_SIZE_TOO_LARGE"


def test_old_size_not_the_recorded_one_is_409_with_the_latest_size() -> None:
    log = MemLog().extend(9)
    state = cosign_all(witness(), log, [5])
    with pytest.raises(OldSizeConflict) as exc:
        witness().add_checkpoint(request(log, 3), state, NOW)
    assert exc.value.latest_size == 5
    assert exc.value.body() == "5\n"
    assert exc.value.kind == "conflict"
    # Never cosigned: the latest size is 0.
    with pytest.raises(OldSizeConflict) as exc:
        witness().add_checkpoint(request(log, 5), None, NOW)
    assert exc.value.body() == "0\n"


def test_size_zero_checkpoint_needs_the_empty_root() -> None:
    cp = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), LOG_KEY)
    with pytest.raises(InconsistentCheckpoint, match="empty tree") as exc:
        witness().add_checkpoint(parse_add_checkpoint(format_add_checkpoint(0, [], cp)), None, NOW)
    assert (exc.value.reason, exc.value.kind) == ("EMPTY_TREE_ROOT", "precondition")
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), LOG_KEY)
    ok = witness().add_checkpoint(
        parse_add_checkpoint(format_add_checkpoint(0, [], empty)), None, NOW
    )
    assert ok.state == WitnessState(0, EMPTY_ROOT)


def test_proof_from_old_size_zero_must_be_empty() -> None:
    log = MemLog().extend(4)
    with pytest.raises(InconsistentCheckpoint, match="must be empty") as exc:
        witness().add_checkpoint(request(log, 0, proof=[bytes(32)]), None, NOW)
    assert exc.value.reason == "PROOF_FROM_EMPTY_TREE"


def test_bad_consistency_proofs_are_422() -> None:
    log = MemLog().extend(20)
    state = cosign_all(witness(), log, [7])
    good = log.proof(7)
    for proof in (good[:-1], [*good, bytes(32)], [bytes(32)] * len(good), good[::-1]):
        with pytest.raises(InconsistentCheckpoint) as exc:
            witness().add_checkpoint(request(log, 7, proof=proof), state, NOW)
        assert exc.value.reason == "BAD_CONSISTENCY_PROOF"
    # Equal sizes: the proof must be empty.
    with pytest.raises(InconsistentCheckpoint):
        witness().add_checkpoint(request(log, 7, 7, proof=[bytes(32)]), state, NOW)


# --- split views ------------------------------------------------------------------------------


def forks(common: int = 6, size: int = 10) -> tuple[MemLog, MemLog]:
    """Two histories of one log: same origin and key, different entries from ``common``."""
    honest = MemLog().extend(common)
    fork = honest.fork(common).extend(size - common, "fork")
    honest.extend(size - common)
    assert honest.size == fork.size == size and honest.root() != fork.root()
    assert honest.root(common) == fork.root(common)
    return honest, fork


def test_split_view_the_witness_cosigns_one_fork_and_refuses_the_other() -> None:
    honest, fork = forks()
    w = witness()
    state = w.add_checkpoint(request(honest, 0), None, NOW).state
    # The fork at the same size, from the size the witness has: same size, other root.
    with pytest.raises(InconsistentCheckpoint) as exc:
        w.add_checkpoint(request(fork, 10), state, NOW)
    assert exc.value.reason == "ROOT_MISMATCH"
    # From the size the fork's operator last saw the witness at: 409, then 422.
    with pytest.raises(OldSizeConflict) as conflict:
        w.add_checkpoint(request(fork, 6), state, NOW)
    assert conflict.value.latest_size == 10
    # The fork grows; its proof from 10 is a proof in the fork, not from the honest root.
    fork.extend(5, "fork")
    with pytest.raises(InconsistentCheckpoint, match="not consistent") as exc:
        w.add_checkpoint(request(fork, 10), state, NOW)
    assert exc.value.reason == "BAD_CONSISTENCY_PROOF"
    # The honest log goes on being cosigned.
    honest.extend(5)
    assert w.add_checkpoint(request(honest, 10), state, NOW).state.size == 15


def test_split_view_a_quorum_verifier_rejects_the_forks_checkpoint() -> None:
    honest, fork = forks()
    bureau, audit, centre = witness(W1), witness(W2), witness(W3)
    cosigned = honest.checkpoint()
    for w in (bureau, audit, centre):
        cosigned += w.add_checkpoint(request(honest, 0), None, NOW).response()
    known = [cosigner(W1), cosigner(W2), cosigner(W3)]
    seen = require_cosignatures(cosigned, known, 2, log_keys=[LOG_KEY.verifier])
    assert len(seen.cosignatures) == 3
    # The operator shows the fork to someone: one colluding (or fresh) witness cosigns it.
    collusion = witness(witness_key("colluding.example/witness"))
    fork_cp = fork.checkpoint()
    fork_cp += collusion.add_checkpoint(request(fork, 0), None, NOW).response()
    with pytest.raises(QuorumNotMet) as exc:
        require_cosignatures(fork_cp, known, 2, log_keys=[LOG_KEY.verifier])
    assert "0 of the 3 known witnesses" in exc.value.message
    assert exc.value.details["missing"] == ",".join(k.key_id for k in known)
    # Borrowing the honest checkpoint's cosignatures does not help: they sign another root.
    borrowed = fork.checkpoint() + "".join(s.line() for s in parse_note(cosigned).signatures[1:])
    with pytest.raises(VerificationError, match="invalid signature"):
        require_cosignatures(borrowed, known, 2, log_keys=[LOG_KEY.verifier])


# --- property: whatever is asked, the witness's cosignatures are one consistent history ---------


@settings(max_examples=60, deadline=None)
@given(
    diverge=st.integers(0, 12),
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 24), st.integers(0, 24), st.booleans()),
        min_size=1,
        max_size=12,
    ),
)
def test_cosigned_checkpoints_are_always_consistent(
    diverge: int, ops: list[tuple[bool, int, int, bool]]
) -> None:
    honest = MemLog().extend(24)
    fork = honest.fork(diverge).extend(24 - diverge, "fork")
    w = witness()
    state: WitnessState | None = None
    history: list[tuple[MemLog, int]] = []
    for use_fork, size, old_guess, use_recorded_old in ops:
        log = fork if use_fork else honest
        recorded = state.size if state else 0
        old = recorded if use_recorded_old else min(old_guess, size)
        proof = log.proof(old, size) if old <= size else []  # old > size: a 400
        try:
            result = w.add_checkpoint(request(log, old, size, proof), state, NOW)
        except (OldSizeConflict, InconsistentCheckpoint, MalformedRequest):
            honest_extends = state is None or honest.root(state.size) == state.root
            # Liveness: the honest log, asked from the recorded size, is never refused.
            assert not (not use_fork and old == recorded and size >= recorded and honest_extends)
            continue
        state = result.state
        history.append((log, size))
    # Safety: sizes never go down, and each cosigned root is a prefix of every later one.
    for (log_a, a), (log_b, b) in itertools.pairwise(history):
        assert a <= b
        assert log_a.root(a) == log_b.root(a)


# --- the verifier's quorum ---------------------------------------------------------------------


def cosigned_by(log: MemLog, *signers: Signer) -> str:
    cp = log.checkpoint()
    for s in signers:
        cp = cosign_checkpoint(cp, s, NOW)
    return cp


def test_require_cosignatures_counts_known_witnesses_only() -> None:
    log = MemLog().extend(3)
    stranger = witness_key("stranger.example/witness")
    cp = cosigned_by(log, W1, stranger, W2)
    known = [cosigner(W1), cosigner(W2), cosigner(W3)]
    seen = require_cosignatures(cp, known, 2, log_keys=[LOG_KEY.verifier], origin=ORIGIN)
    assert seen.cosigners == (cosigner(W1), cosigner(W2))
    with pytest.raises(QuorumNotMet, match=r"2 of the 3 known.*3 required.*nscc-cd") as exc:
        require_cosignatures(cp, known, 3, log_keys=[LOG_KEY.verifier])
    assert exc.value.reason == "WITNESS_QUORUM_NOT_MET"
    assert exc.value.details["cosigned"] == f"{cosigner(W1).key_id},{cosigner(W2).key_id}"
    assert require_cosignatures(cp, known, 0, log_keys=[LOG_KEY.verifier]).checkpoint.size == 3


def test_require_cosignatures_refuses_a_bad_quorum_and_duplicate_witness_keys() -> None:
    cp = cosigned_by(MemLog().extend(1), W1)
    for quorum in (-1, 2, True):
        with pytest.raises(InvalidInput, match="quorum"):
            require_cosignatures(cp, [cosigner(W1)], quorum, log_keys=[LOG_KEY.verifier])
    # One key under two names would count one signature twice (the message has no name).
    alias = CosignatureVerifier("alias.example/witness", W1.verifier.public)
    aliased = (
        cp + NoteSignature(alias.name, alias.hash, parse_note(cp).signatures[1].signature).line()
    )
    with pytest.raises(InvalidInput, match="same public key") as exc:
        require_cosignatures(aliased, [cosigner(W1), alias], 2, log_keys=[LOG_KEY.verifier])
    assert exc.value.reason == "DUPLICATE_WITNESS_KEY"


def test_require_cosignatures_needs_the_log_signature_and_origin() -> None:
    log = MemLog().extend(2)
    only_witness = sign_note(Checkpoint(ORIGIN, 2, log.root()).body(), [W1])  # not a cosig
    cosig = cosign_checkpoint(only_witness, W2, NOW)
    with pytest.raises(VerificationError, match="not signed by the log key"):
        require_cosignatures(cosig, [cosigner(W2)], 1, log_keys=[LOG_KEY.verifier])
    with pytest.raises(VerificationError, match="origin"):
        require_cosignatures(
            cosigned_by(log, W1), [cosigner(W1)], 1, log_keys=[LOG_KEY.verifier], origin="x/y"
        )
    with pytest.raises(InvalidInput, match="at least one log key"):
        require_cosignatures(cosigned_by(log, W1), [cosigner(W1)], 1, log_keys=[])


def test_a_bad_cosignature_by_a_known_witness_rejects_the_checkpoint() -> None:
    log = MemLog().extend(2)
    cp = cosigned_by(log, W1)
    line = parse_note(cp).signatures[1]
    bad = NoteSignature(line.name, line.key_hash, line.signature[:8] + bytes(64)).line()
    with pytest.raises(VerificationError, match="invalid signature for key czj"):
        require_cosignatures(
            cp.replace(line.line(), bad), [cosigner(W1)], 0, log_keys=[LOG_KEY.verifier]
        )


# --- the log's side: merging answers ------------------------------------------------------------


def test_merge_cosignatures_keeps_known_valid_lines_once() -> None:
    log = MemLog().extend(6)
    cp = log.checkpoint()
    w1_line = witness(W1).add_checkpoint(request(log, 0), None, NOW).response()
    w2_line = witness(W2).add_checkpoint(request(log, 0), None, NOW).response()
    stranger = witness(witness_key("stranger.example/w")).add_checkpoint(request(log, 0), None, NOW)
    known = [cosigner(W1), cosigner(W2)]
    merged = merge_cosignatures(cp, [w1_line, stranger.response(), w2_line, w1_line], known)
    assert merged == cp + w1_line + w2_line
    assert merge_cosignatures(merged, [w1_line], known) == merged
    assert (
        len(require_cosignatures(merged, known, 2, log_keys=[LOG_KEY.verifier]).cosignatures) == 2
    )
    other = MemLog().extend(7)
    wrong = witness(W1).add_checkpoint(request(other, 0), None, NOW).response()
    with pytest.raises(VerificationError, match="does not verify") as exc:
        merge_cosignatures(cp, [wrong], known)
    assert exc.value.reason == "INVALID_COSIGNATURE"


@pytest.mark.parametrize(
    "text",
    ["", "\n", "— a AAAAAAA=", "x— a AAAAAAA=\n", "— a AAAAAAA=\n\n— b AAAAAAA=\n", "— a AAAA\n"],
)
def test_malformed_witness_answers(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_cosignature_lines(text)
    assert exc.value.reason == "MALFORMED_COSIGNATURE"


# --- purity --------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["witness.py", "tlogpolicy.py"])
def test_witness_domain_modules_import_no_framework(module: str) -> None:
    source = (Path(__file__).parent.parent / "ledger" / module).read_text("utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "base64", "collections", "dataclasses", "re", "ledger"}

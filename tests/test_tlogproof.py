"""c2sp.org/tlog-proof@v1 (``ledger.tlogproof``).

Vectors and their provenance: ``tests/vectors/transparency-dev-formats/checkpoint_vectors.json``
(``tlog_proof_marshal``), from github.com/transparency-dev/formats ``proof/tlog_proof_test.go``,
commit 0b850f1a7b4a5b70deeacac6535e4b8023809d21, Apache-2.0; the parse-error cases below
follow the same file's ``TestUnmarshalErrors``. Format text: C2SP/C2SP tlog-proof.md.

The inclusion tests build a 5-leaf RFC 9162 tree by hand (hashlib only), so they do not
depend on ``ledger.merkle`` being right; ``verify_tlog_proof`` uses ``ledger.merkle``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import InvalidInput, VerificationError
from ledger.keys import Signer
from ledger.note import sign_note
from ledger.tlogproof import TlogProof, format_tlog_proof, parse_tlog_proof, verify_tlog_proof

VECTORS = Path(__file__).parent / "vectors"
FORMATS = json.loads(
    (VECTORS / "transparency-dev-formats" / "checkpoint_vectors.json").read_text("utf-8")
)


def test_vector_file_keeps_its_provenance() -> None:
    assert FORMATS["source"]["repo"] == "github.com/transparency-dev/formats"
    assert "proof/tlog_proof_test.go" in FORMATS["source"]["paths"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sha(label: str) -> bytes:
    # The vector file writes hashes as "sha256('hash1')".
    assert label.startswith("sha256('") and label.endswith("')")
    return hashlib.sha256(label[len("sha256('") : -2].encode()).digest()


@pytest.mark.parametrize("case", FORMATS["tlog_proof_marshal"], ids=lambda c: c["desc"])
def test_marshal_vectors(case: dict[str, Any]) -> None:
    hashes = tuple(_sha(h) for h in case["hashes"])
    extra = case["extra_ascii"].encode() if "extra_ascii" in case else None
    proof = TlogProof(case["index"], hashes, case["checkpoint"], extra)
    if "want" in case:
        want = case["want"]
    else:
        want = case["want_template"]
        for i, h in enumerate(hashes, start=1):
            want = want.replace(f"{{b64(h{i})}}", _b64(h))
        if extra is not None:
            want = want.replace("{b64(extra)}", _b64(extra))
        assert "{" not in want
    assert format_tlog_proof(proof) == want
    assert parse_tlog_proof(want) == proof


def test_spec_example_shape_parses() -> None:
    # The header of the example in tlog-proof.md, with a stand-in checkpoint.
    text = (
        "c2sp.org/tlog-proof@v1\n"
        "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6\n"
        "index 73894\n"
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
        "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
        "\n"
        "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n"
        "— example.com/fancylog AAAAAAA=\n"
    )
    proof = parse_tlog_proof(text)
    assert proof.index == 73894
    assert len(proof.hashes) == 2
    assert proof.extra == b"age-v1.2.1-darwin-arm64.tar.gz"
    assert proof.checkpoint.startswith("example.com/fancylog\n109482\n")
    assert format_tlog_proof(proof) == text


H32 = _b64(bytes(32))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("wrong-header\nindex 0\n\ncheckpoint\n", "first line"),
        ("c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n", "base64"),
        ("c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n", "index"),
        ("c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n", "index"),
        ("c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n", "index"),
        ("c2sp.org/tlog-proof@v1\nindex 05\n\ncheckpoint\n", "leading zeros"),
        (f"c2sp.org/tlog-proof@v1\nindex {2**64}\n\ncheckpoint\n", "64 bits"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n", "base64"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{_b64(bytes(64))}\n\ncheckpoint\n", "64 bytes"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{H32}\n", "empty line"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{H32}\n\ncheckpoint", "checkpoint"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{H32}\n\n\ncheckpoint\n", "checkpoint"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{H32}\n\n", "checkpoint"),
        ("c2sp.org/tlog-proof@v1\nindex 0\nextra AA==\n\ncheckpoint\n", "base64"),
        ("c2sp.org/tlog-proof@v2\nindex 0\n\ncheckpoint\n", "first line"),
    ],
)
def test_parse_errors(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=f"^malformed tlog-proof: .*{why}"):
        parse_tlog_proof(text)


def test_empty_extra_is_not_absent_extra() -> None:
    p = parse_tlog_proof("c2sp.org/tlog-proof@v1\nextra \nindex 0\n\ncp\n")
    assert p.extra == b""
    assert format_tlog_proof(p) == "c2sp.org/tlog-proof@v1\nextra \nindex 0\n\ncp\n"


def test_format_refuses_bad_fields() -> None:
    with pytest.raises(InvalidInput):
        format_tlog_proof(TlogProof(-1, (), "cp\n"))
    with pytest.raises(InvalidInput):
        format_tlog_proof(TlogProof(0, (b"short",), "cp\n"))
    with pytest.raises(InvalidInput):
        format_tlog_proof(TlogProof(0, (), "no newline"))


# --- inclusion against a hand-built 5-leaf tree -----------------------------------------------


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()  # RFC 9162 2.1.1


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


ENTRIES = [f"entry {i}".encode() for i in range(5)]
L = [leaf(e) for e in ENTRIES]
N01, N23 = node(L[0], L[1]), node(L[2], L[3])
N0123 = node(N01, N23)
ROOT5 = node(N0123, L[4])  # the largest power of two below 5 is 4: split 4 + 1
# RFC 9162 2.1.3.1 PATH(m, D[5]), leaf's sibling first:
PATHS = {
    0: (L[1], N23, L[4]),
    1: (L[0], N23, L[4]),
    2: (L[3], N01, L[4]),
    3: (L[2], N01, L[4]),
    4: (N0123,),
}

LOG = Signer("example.com/suanli-proof-test", hashlib.sha256(b"tlog-proof test log").digest())
CHECKPOINT = sign_checkpoint(Checkpoint(LOG.name, 5, ROOT5), LOG)


def _proof(index: int, hashes: tuple[bytes, ...] | None = None, cp: str = CHECKPOINT) -> str:
    return format_tlog_proof(TlogProof(index, PATHS[index] if hashes is None else hashes, cp))


@pytest.mark.parametrize("index", sorted(PATHS))
def test_verify_every_leaf(index: int) -> None:
    cp = verify_tlog_proof(_proof(index), ENTRIES[index], LOG.verifier, LOG.name)
    assert (cp.origin, cp.size, cp.root) == (LOG.name, 5, ROOT5)


def test_verify_single_leaf_tree_with_empty_path() -> None:
    cp1 = sign_checkpoint(Checkpoint(LOG.name, 1, L[0]), LOG)
    text = format_tlog_proof(TlogProof(0, (), cp1))
    assert verify_tlog_proof(text, ENTRIES[0], LOG.verifier).size == 1


def test_wrong_entry_fails() -> None:
    with pytest.raises(VerificationError):
        verify_tlog_proof(_proof(2), ENTRIES[3], LOG.verifier)


def test_wrong_index_fails() -> None:
    with pytest.raises(VerificationError):
        verify_tlog_proof(_proof(3, PATHS[2]), ENTRIES[2], LOG.verifier)


def test_index_beyond_tree_fails() -> None:
    with pytest.raises(VerificationError, match="not below"):
        verify_tlog_proof(_proof(5, PATHS[4]), ENTRIES[4], LOG.verifier)


@pytest.mark.parametrize(
    "hashes",
    [
        (),
        PATHS[2][:-1],  # too short
        (*PATHS[2], L[0]),  # too long
        (PATHS[2][1], PATHS[2][0], PATHS[2][2]),  # wrong order
        (bytes(32), *PATHS[2][1:]),  # tampered
    ],
)
def test_bad_paths_fail(hashes: tuple[bytes, ...]) -> None:
    with pytest.raises(VerificationError):
        verify_tlog_proof(_proof(2, hashes), ENTRIES[2], LOG.verifier)


def test_checkpoint_must_be_signed_by_the_log_with_the_origin() -> None:
    other = Signer(LOG.name, hashlib.sha256(b"impostor").digest())
    forged = sign_checkpoint(Checkpoint(LOG.name, 5, ROOT5), other)
    with pytest.raises(VerificationError, match="no verifiable signatures"):
        verify_tlog_proof(_proof(2, cp=forged), ENTRIES[2], LOG.verifier)
    with pytest.raises(VerificationError, match="origin"):
        verify_tlog_proof(_proof(2), ENTRIES[2], LOG.verifier, "example.com/other")


def test_extra_data_does_not_affect_verification() -> None:
    text = format_tlog_proof(TlogProof(4, PATHS[4], CHECKPOINT, b"anything at all"))
    assert verify_tlog_proof(text, ENTRIES[4], LOG.verifier).size == 5


def test_witness_signatures_are_checked_when_configured() -> None:
    witness = Signer("witness.example/w", hashlib.sha256(b"w").digest())
    body = Checkpoint(LOG.name, 5, ROOT5).body()
    witness_line = sign_note(body, [witness]).removeprefix(body + "\n")
    cosigned = CHECKPOINT + witness_line
    cp = verify_tlog_proof(
        _proof(1, cp=cosigned), ENTRIES[1], LOG.verifier, witnesses=[witness.verifier]
    )
    assert cp.size == 5
    # A corrupted witness line is ignored when that witness is not configured, and
    # rejects the proof when it is.
    bad_line = witness_line[:-10] + ("A" if witness_line[-10] != "A" else "B") + witness_line[-9:]
    bad = _proof(1, cp=CHECKPOINT + bad_line)
    assert verify_tlog_proof(bad, ENTRIES[1], LOG.verifier).size == 5
    with pytest.raises(VerificationError, match=r"witness\.example/w"):
        verify_tlog_proof(bad, ENTRIES[1], LOG.verifier, witnesses=[witness.verifier])


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    index=st.integers(0, 2**64 - 1),
    hashes=st.lists(st.binary(min_size=32, max_size=32), max_size=64),
    extra=st.none() | st.binary(max_size=100),
    checkpoint=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=100)
    .filter(lambda s: not s.startswith("\n"))
    .map(lambda s: s + "\n"),
)
def test_format_parse_round_trip(
    index: int, hashes: list[bytes], extra: bytes | None, checkpoint: str
) -> None:
    proof = TlogProof(index, tuple(hashes), checkpoint, extra)
    assert parse_tlog_proof(format_tlog_proof(proof)) == proof

"""Signed notes (``ledger.note``) against public vectors.

Vectors and their provenance (each file keeps its ``source`` block, checked below):

* ``tests/vectors/go-sumdb-note/note_vectors.json``: golang.org/x/mod ``sumdb/note``
  tests (note_test.go, note.go package doc), commit fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db,
  BSD-3-Clause. The keys are Go's published *test* keys (PeterNeumann, EnochRoot).
* ``tests/vectors/c2sp/c2sp_examples.json``: the signed-note spec example,
  C2SP/C2SP signed-note.md, commit 5ba5ee830903e91240fc6f9f3a7a9293d49e69c9, CC BY 4.0.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput, LedgerError, NotFound, VerificationError
from ledger.keys import Signer, Verifier
from ledger.note import (
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    VerifierList,
    format_note,
    open_note,
    parse_note,
    sign_note,
)

VECTORS = Path(__file__).parent / "vectors"
NOTE = json.loads((VECTORS / "go-sumdb-note" / "note_vectors.json").read_text("utf-8"))
C2SP = json.loads((VECTORS / "c2sp" / "c2sp_examples.json").read_text("utf-8"))

KEYS: dict[str, Any] = NOTE["keys"]
VERIFIERS = {name: Verifier.parse(k["vkey"]) for name, k in KEYS.items()}
PETER = Signer.parse(KEYS["PeterNeumann"]["skey"])
TEXT: str = NOTE["note_text"]
GOLDEN: str = NOTE["signed_notes"][0]["msg"]


def test_vector_files_keep_their_provenance() -> None:
    assert NOTE["source"]["repo"].startswith("go.googlesource.com/mod")
    assert NOTE["source"]["license"] == "BSD-3-Clause"
    assert C2SP["source"]["repo"] == "github.com/C2SP/C2SP"


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KEYS))
def test_vkeys_parse_and_round_trip(name: str) -> None:
    v = VERIFIERS[name]
    assert v.name == name
    assert f"{v.hash:08x}" == KEYS[name]["key_hash_hex"]
    assert v.vkey == KEYS[name]["vkey"]


def test_peter_skey_matches_vkey() -> None:
    assert PETER.verifier == VERIFIERS["PeterNeumann"]
    assert PETER.skey == KEYS["PeterNeumann"]["skey"]


@pytest.mark.parametrize("vkey", [case["vkey"] for case in NOTE["bad_vkeys"] if "vkey" in case])
def test_bad_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(InvalidInput):
        Verifier.parse(vkey)


GOOD_VKEY: str = KEYS["PeterNeumann"]["vkey"]


def test_every_proper_substring_of_a_vkey_is_refused() -> None:
    # note_vectors.json bad_vkeys rule, from Go's TestNewVerifier.
    accepted = []
    for i in range(len(GOOD_VKEY)):
        for j in range(i, len(GOOD_VKEY) + 1):
            sub = GOOD_VKEY[i:j]
            if sub == GOOD_VKEY:
                continue
            try:
                Verifier.parse(sub)
            except InvalidInput:
                continue
            accepted.append(sub)
    assert accepted == []


@pytest.mark.parametrize("i", range(len(GOOD_VKEY)))
def test_every_single_byte_increment_of_a_vkey_is_refused(i: int) -> None:
    raw = bytearray(GOOD_VKEY.encode())
    raw[i] += 1
    with pytest.raises(InvalidInput):
        Verifier.parse(raw.decode("utf-8", "surrogateescape"))


def test_non_canonical_vkey_base64_is_refused() -> None:
    with pytest.raises(InvalidInput):
        Verifier.parse(GOOD_VKEY + "=")


# --- signing --------------------------------------------------------------------------------


def test_signing_reproduces_the_golden_note_byte_for_byte() -> None:
    # Ed25519 (RFC 8032) is deterministic: Go's TestSign output must come back exactly.
    assert sign_note(TEXT, [PETER]) == GOLDEN
    assert TEXT + "\n" + NOTE["signature_lines"]["PeterNeumann"] == GOLDEN


def test_signature_line_vectors_parse() -> None:
    for name, line in NOTE["signature_lines"].items():
        note = parse_note(TEXT + "\n" + line)
        (sig,) = note.signatures
        assert sig.name == name
        assert sig.key_hash == VERIFIERS[name].hash
        assert len(sig.signature) == 64
        assert sig.line() == line


def test_sign_refuses_text_without_final_newline() -> None:
    with pytest.raises(InvalidInput, match="malformed note"):
        sign_note("no newline", [PETER])


def test_sign_refuses_control_characters_and_no_signers() -> None:
    with pytest.raises(InvalidInput, match="malformed note"):
        sign_note("tab\there\n", [PETER])
    with pytest.raises(InvalidInput):
        sign_note(TEXT, [])


def test_sign_with_two_keys_lists_both() -> None:
    other = Signer("EnochRoot", hashlib.sha256(b"not Enoch's real key").digest())
    msg = sign_note(TEXT, [PETER, other])
    note, verified, unverified = open_note(msg, [PETER.verifier, other.verifier])
    assert note.text == TEXT
    assert [s.key_id for s in verified] == [PETER.key_id, other.key_id]
    assert unverified == []


# --- opening: the Go Open cases -------------------------------------------------------------


def _message(case: dict[str, Any]) -> str:
    if "msg" in case:
        return str(case["msg"])
    # "note_text + '\n' + signature_lines.PeterNeumann * 101"
    assert case["msg_construct"] == "note_text + '\\n' + signature_lines.PeterNeumann * 101"
    line: str = NOTE["signature_lines"]["PeterNeumann"]
    return TEXT + "\n" + line * 101


@pytest.mark.parametrize("case", NOTE["signed_notes"], ids=lambda c: c["desc"][:60])
def test_open_vectors(case: dict[str, Any]) -> None:
    msg = _message(case)
    verifiers = [VERIFIERS[name] for name in case["verify_with"]]
    if case["want_ok"]:
        note, verified, unverified = open_note(msg, verifiers)
        assert note.text == TEXT
        assert [s.name for s in verified] == case["want_verified"]
        assert [s.name for s in unverified] == case["want_unverified"]
        # The same result from bytes input.
        assert open_note(msg.encode(), verifiers) == (note, verified, unverified)
        return
    want = case["want_error"]
    if want == "malformed note":
        with pytest.raises(InvalidInput, match=r"^malformed note"):
            open_note(msg, verifiers)
    else:
        with pytest.raises(VerificationError) as info:
            open_note(msg, verifiers)
        assert info.value.message == want


def _malformed_message(case: dict[str, Any]) -> bytes:
    if "msg" in case:
        return str(case["msg"]).encode()
    after: str = case["msg_after_prefix"]
    return bytes.fromhex(case["msg_bytes_hex_prefix"]) + after.encode()


@pytest.mark.parametrize("case", NOTE["malformed_notes"], ids=lambda c: c["desc"])
def test_malformed_vectors(case: dict[str, Any]) -> None:
    raw = _malformed_message(case)
    for msg in (raw, raw.decode("utf-8", "surrogateescape")):
        with pytest.raises(InvalidInput, match=r"^malformed note"):
            parse_note(msg)
        with pytest.raises(InvalidInput, match=r"^malformed note"):
            open_note(msg, list(VERIFIERS.values()))


def test_c2sp_signed_note_example_verifies() -> None:
    example = C2SP["signed_note_example"]
    assert example["want_ok"] is True
    v = Verifier.parse(example["vkey"])
    note, verified, unverified = open_note(example["signed_note"], [v])
    assert note.text == "This is an example message.\n"
    assert [s.key_id for s in verified] == [v.key_id]
    assert unverified == []


# --- verifier list rules --------------------------------------------------------------------


def test_unknown_key_lookup() -> None:
    rules = NOTE["verifier_list_rules"]
    assert rules["lookup_by"] == "(name, key_hash) pair"
    known = VerifierList([VERIFIERS["PeterNeumann"]])
    with pytest.raises(NotFound) as info:
        known.verifier("PeterNeumann", 0xC74F20A4)
    assert info.value.message == "unknown key PeterNeumann+c74f20a4"
    assert known.verifier("PeterNeumann", 0xC74F20A3) is VERIFIERS["PeterNeumann"]


def test_duplicate_verifiers_are_ambiguous() -> None:
    enoch = VERIFIERS["EnochRoot"]
    known = VerifierList([enoch, enoch])
    with pytest.raises(VerificationError) as info:
        known.verifier("EnochRoot", 0xAF0CFE78)
    assert info.value.message == "ambiguous key EnochRoot+af0cfe78"
    both = NOTE["signed_notes"][1]["msg"]
    with pytest.raises(VerificationError, match=r"^ambiguous key EnochRoot\+af0cfe78$"):
        open_note(both, [VERIFIERS["PeterNeumann"], enoch, enoch])
    # Ambiguity only matters when a signature names that key (Go reports it on lookup).
    assert open_note(GOLDEN, [VERIFIERS["PeterNeumann"], enoch, enoch])[1][0].name == (
        "PeterNeumann"
    )


def test_name_or_hash_alone_does_not_select_a_key() -> None:
    # c2sp.org/signed-note: ignore signatures from unknown keys "even if they share a name
    # or ID (but not both) with a known key".
    same_name = Signer("PeterNeumann", hashlib.sha256(b"another Peter").digest())
    msg = sign_note(TEXT, [same_name, PETER])
    _, verified, unverified = open_note(msg, [PETER.verifier])
    assert [s.key_id for s in verified] == [PETER.key_id]
    assert [s.key_id for s in unverified] == [same_name.key_id]
    # A line with Peter's hash under another name is unknown, not a bad Peter signature.
    forged = TEXT + "\n" + NOTE["signature_lines"]["PeterNeumann"].replace("PeterNeumann", "Eve")
    with pytest.raises(VerificationError, match=r"^note has no verifiable signatures$"):
        open_note(forged, [PETER.verifier])


def test_a_key_that_signed_twice_counts_once() -> None:
    line = NOTE["signature_lines"]["PeterNeumann"]
    _, verified, _ = open_note(GOLDEN + line, [PETER.verifier])
    assert len(verified) == 1
    enoch_line = NOTE["signature_lines"]["EnochRoot"]
    _, _, unverified = open_note(GOLDEN + enoch_line + enoch_line, [PETER.verifier])
    assert len(unverified) == 1


def test_signature_count_limit_boundary() -> None:
    line = NOTE["signature_lines"]["PeterNeumann"]
    note = parse_note(TEXT + "\n" + line * MAX_SIGNATURES)
    assert len(note.signatures) == MAX_SIGNATURES
    with pytest.raises(InvalidInput, match="malformed note"):
        parse_note(TEXT + "\n" + line * (MAX_SIGNATURES + 1))


# --- structure details ----------------------------------------------------------------------


def test_text_may_contain_blank_lines() -> None:
    text = "para one\n\npara two\n\n"
    msg = sign_note(text, [PETER])
    note, _, _ = open_note(msg, [PETER.verifier])
    assert note.text == text


@pytest.mark.parametrize(
    "block",
    [
        "— PeterNeumann\n",  # no base64
        "— PeterNeumann \n",  # empty base64
        "—PeterNeumann AAAAAAA=\n",  # no space after the dash
        "- PeterNeumann x08go/ZJ\n",  # ASCII hyphen
        "—  x08go/ZJ\n",  # empty name
        "— Peter+Neumann x08go/ZJ\n",  # '+' in name
        "— Peter\u00a0Neumann x08go/ZJ\n",  # a Unicode space in the name
        "— PeterNeumann AAAAAA==\n",  # 4 bytes: a key hash but no signature
        "— PeterNeumann AAAAAAB=\n",  # non-canonical base64 (spare bits set)
        "— PeterNeumann AAAAAAA\n",  # missing padding
        "— PeterNeumann x08go/ZJ\n\n",  # blank line at the end
    ],
)
def test_malformed_signature_lines(block: str) -> None:
    with pytest.raises(InvalidInput, match=r"^malformed note"):
        parse_note(TEXT + "\n" + block)


def test_del_and_non_ascii_are_allowed_in_text() -> None:
    # Only ASCII controls below U+0020 are banned (c2sp.org/signed-note, "Format").
    text = "算力券 \x7f é\n"
    assert open_note(sign_note(text, [PETER]), [PETER.verifier])[0].text == text


def test_format_note_round_trips_and_refuses_empty() -> None:
    note = parse_note(NOTE["signed_notes"][1]["msg"])
    assert format_note(note) == NOTE["signed_notes"][1]["msg"]
    with pytest.raises(InvalidInput):
        format_note(Note(text=TEXT, signatures=()))
    with pytest.raises(InvalidInput):
        format_note(Note(text=TEXT, signatures=(NoteSignature("bad name", 1, b"x"),)))


def test_verification_errors_carry_reasons() -> None:
    bad = NOTE["signed_notes"][5]
    with pytest.raises(VerificationError) as info:
        open_note(bad["msg"], [PETER.verifier])
    assert info.value.reason == "INVALID_SIGNATURE"
    assert info.value.details == {"key": "PeterNeumann+c74f20a3"}


# --- properties -----------------------------------------------------------------------------

SIGNER = Signer("example.com/prop", hashlib.sha256(b"suanli note property key").digest())

note_texts = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"],  # lone surrogates are not UTF-8
        exclude_characters=[chr(c) for c in range(0x20) if c != 0x0A],
    ),
    max_size=200,
).map(lambda s: s + "\n")


@settings(max_examples=60, deadline=None)
@given(text=note_texts)
def test_sign_then_open_round_trips(text: str) -> None:
    msg = sign_note(text, [SIGNER])
    note, verified, unverified = open_note(msg, [SIGNER.verifier])
    assert note.text == text
    assert [s.key_id for s in verified] == [SIGNER.key_id]
    assert unverified == []


@settings(max_examples=60, deadline=None)
@given(text=note_texts, data=st.data())
def test_any_flipped_bit_is_rejected(text: str, data: st.DataObject) -> None:
    raw = bytearray(sign_note(text, [SIGNER]).encode())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(LedgerError):
        open_note(bytes(raw), [SIGNER.verifier])


@settings(max_examples=30, deadline=None)
@given(text=note_texts, bit=st.integers(0, 64 * 8 - 1))
def test_flipped_signature_bit_is_an_invalid_signature(text: str, bit: int) -> None:
    (sig,) = parse_note(sign_note(text, [SIGNER])).signatures
    forged = bytearray(sig.signature)
    forged[bit // 8] ^= 1 << (bit % 8)
    msg = format_note(Note(text, (NoteSignature(sig.name, sig.key_hash, bytes(forged)),)))
    with pytest.raises(VerificationError, match=r"^invalid signature for key example\.com/prop"):
        open_note(msg, [SIGNER.verifier])


def test_key_hash_is_big_endian_in_the_line() -> None:
    line = NOTE["signature_lines"]["PeterNeumann"]
    raw = base64.b64decode(line.split(" ")[2])
    assert struct.unpack(">I", raw[:4])[0] == 0xC74F20A3

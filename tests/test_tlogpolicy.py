"""Trust policies (``ledger.tlogpolicy``): c2sp.org/tlog-policy as published (the copy in
../shared/specs/c2sp/tlog-policy.md), its example with real keys in place of ``<vkey>``."""

from __future__ import annotations

import pytest
from witness_helpers import LOG_KEY, ORIGIN, MemLog, cosigner, witness_key

from ledger.checkpoint import cosign_checkpoint
from ledger.errors import InvalidInput, VerificationError
from ledger.keys import Signer
from ledger.tlogpolicy import (
    Policy,
    PolicyGroup,
    format_policy,
    k_of_n,
    parse_log_list,
    parse_policy,
    verify_checkpoint,
)
from ledger.witness import QuorumNotMet

X = {n: witness_key(f"x{n}.example/witness") for n in (1, 2, 3)}
Y = {n: witness_key(f"y{n}.example/witness") for n in (1, 2, 3)}


def vkey(signer: Signer) -> str:
    return cosigner(signer).vkey


# The spec's example policy, keys filled in.
EXAMPLE = f"""log {LOG_KEY.verifier.vkey}

witness X1 {vkey(X[1])}
witness X2 {vkey(X[2])}
witness X3 {vkey(X[3])}
group X-witnesses 2 X1 X2 X3

witness Y1 {vkey(Y[1])}
witness Y2 {vkey(Y[2])}
witness Y3 {vkey(Y[3])}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def test_spec_example_parses_and_means_what_the_spec_says() -> None:
    policy = parse_policy(EXAMPLE)
    assert [log.origin for log in policy.logs] == [ORIGIN]
    assert [w.name for w in policy.witnesses] == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert policy.groups == (
        PolicyGroup("X-witnesses", 2, ("X1", "X2", "X3")),
        PolicyGroup("Y-witnesses", 1, ("Y1", "Y2", "Y3")),
        PolicyGroup("X-and-Y", 2, ("X-witnesses", "Y-witnesses")),
    )
    assert policy.quorum == "X-and-Y"
    # "at least two of the X-witnesses, and at least one of the Y-witnesses"
    assert policy.is_satisfied({"X1", "X3", "Y2"})
    assert policy.is_satisfied({"X1", "X2", "X3", "Y1", "Y2", "Y3"})
    assert not policy.is_satisfied({"X1", "Y1", "Y2", "Y3"})
    assert not policy.is_satisfied({"X1", "X2", "X3"})
    assert policy.explain({"X1", "Y1"}) == (
        "group X-and-Y needs 2 of X-witnesses, Y-witnesses, has 1; "
        "group X-witnesses needs 2 of X1, X2, X3, has 1; "
        "no cosignature from witness X2; no cosignature from witness X3"
    )


def test_format_round_trips() -> None:
    policy = parse_policy(EXAMPLE)
    text = format_policy(policy)
    assert parse_policy(text) == policy
    assert "group X-witnesses 2 X1 X2 X3\n" in text
    assert "group Y-witnesses any Y1 Y2 Y3\n" in text
    assert "group X-and-Y all X-witnesses Y-witnesses\n" in text
    assert text.endswith("quorum X-and-Y\n")


def test_urls_spacing_comments_and_a_last_line_without_newline() -> None:
    text = (
        "# the bureau's policy\n"
        f"  log\t{LOG_KEY.verifier.vkey}   https://ledger.example/  \n"
        "\n \t \n"
        "   # indented comment\n"
        f"witness\tczj {vkey(X[1])}\thttps://czj.example/witness/\n"
        "quorum czj"
    )
    policy = parse_policy(text)
    assert policy.logs[0].url == "https://ledger.example/"
    assert policy.witnesses[0].url == "https://czj.example/witness/"
    assert policy.quorum == "czj"
    assert parse_policy(format_policy(policy)) == policy


def test_quorum_none_needs_no_witness() -> None:
    policy = parse_policy("quorum none\n")
    assert policy.is_satisfied(set())
    assert (policy.logs, policy.witnesses, policy.groups) == ((), (), ())


def test_names_are_octet_strings() -> None:
    raw = f"witness w\xff {vkey(X[1])}\nwitness w\xfe {vkey(X[2])}\n".encode("latin-1")
    raw += "group g all w\xff w\xfe\nquorum g\n".encode("latin-1")
    policy = parse_policy(raw)
    assert len({w.name for w in policy.witnesses}) == 2  # not both U+FFFD
    assert format_policy(policy).encode("utf-8", "surrogateescape") == raw


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no quorum line"),
        (f"witness a {vkey(X[1])}\n", "no quorum line"),
        ("quorum none\nquorum none\n", "exactly one quorum"),
        ("quorum\n", "want 'quorum <name>'"),
        ("quorum a b\n", "want 'quorum <name>'"),
        ("quorum nobody\n", "not a witness or group defined above"),
        ("frobnicate x\nquorum none\n", "unknown keyword"),
        ("\u00a0quorum none\n", "unknown keyword"),  # only space and tab separate
        ("quorum none\r\n", "0x0d"),
        ("quorum none\x7f\n", "0x7f"),
        ("quorum\x00none\n", "0x00"),
        (f"quorum none\nwitness none {vkey(X[1])}\n", "'none' is predefined"),
        (f"witness a {vkey(X[1])}\nwitness a {vkey(X[2])}\nquorum a\n", "already defined"),
        (f"witness a {vkey(X[1])}\nwitness b {vkey(X[1])}\nquorum a\n", "same public key"),
        (f"witness a {vkey(X[1])} u extra\nquorum a\n", "want 'witness"),
        ("witness a\nquorum none\n", "want 'witness"),
        ("witness a not-a-key\nquorum none\n", "witness key"),
        (f"witness a {LOG_KEY.verifier.vkey}\nquorum none\n", "type 0x04"),
        (f"log {vkey(X[1])}\nquorum none\n", "log key"),
        (f"log {LOG_KEY.verifier.vkey}\nlog {LOG_KEY.verifier.vkey}\nquorum none\n", "listed"),
        ("log\nquorum none\n", "want 'log"),
        (f"witness a {vkey(X[1])}\ngroup g 1\nquorum g\n", "with a member"),
        (f"witness a {vkey(X[1])}\ngroup g 0 a\nquorum g\n", "threshold '0'"),
        (f"witness a {vkey(X[1])}\ngroup g 2 a\nquorum g\n", "threshold '2'"),
        (f"witness a {vkey(X[1])}\ngroup g -1 a\nquorum g\n", "threshold '-1'"),
        (f"witness a {vkey(X[1])}\ngroup g one a\nquorum g\n", "threshold 'one'"),
        (f"witness a {vkey(X[1])}\ngroup g ١ a\nquorum g\n", "threshold"),  # not ASCII
        (f"witness a {vkey(X[1])}\ngroup g any a none\nquorum g\n", "'none' cannot be"),
        (f"witness a {vkey(X[1])}\ngroup g any b\nquorum g\n", "member 'b' is not"),
        (f"witness a {vkey(X[1])}\ngroup g all a a\nquorum g\n", "already a group member"),
        (
            f"witness a {vkey(X[1])}\ngroup g any a\ngroup h any a\nquorum g\n",
            "already a group member",
        ),
        (f"witness a {vkey(X[1])}\ngroup a any a\nquorum a\n", "already defined"),
        (f"group g any a\nwitness a {vkey(X[1])}\nquorum g\n", "member 'a' is not"),
    ],
)
def test_malformed_policies(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why) as exc:
        parse_policy(text)
    assert exc.value.reason == "MALFORMED_POLICY"


def test_the_error_names_the_line() -> None:
    with pytest.raises(InvalidInput, match="line 3: unknown keyword 'qorum'"):
        parse_policy(f"# x\nwitness a {vkey(X[1])}\nqorum a\n")


def test_a_plain_ed25519_witness_key_is_refused_with_its_cosigner_spelling() -> None:
    plain = X[1].verifier.vkey  # type 0x01
    with pytest.raises(InvalidInput) as exc:
        parse_policy(f"witness a {plain}\nquorum a\n")
    assert vkey(X[1]) in exc.value.message


def test_implementation_limits_32_of_each() -> None:
    logs = [Signer(f"log{i}.example/log", bytes([i]) * 32) for i in range(32)]
    wits = [witness_key(f"w{i}.example/witness") for i in range(64)]
    lines = [f"log {s.verifier.vkey}" for s in logs]
    lines += [f"witness w{i} {vkey(s)}" for i, s in enumerate(wits)]
    lines += [f"group g{i} any w{2 * i} w{2 * i + 1}" for i in range(32)]
    lines += ["group top 16 " + " ".join(f"g{i}" for i in range(32)), "quorum top"]
    policy = parse_policy("\n".join(lines) + "\n")
    assert (len(policy.logs), len(policy.witnesses), len(policy.groups)) == (32, 64, 33)
    assert policy.is_satisfied({f"w{2 * i}" for i in range(16)})
    assert not policy.is_satisfied({f"w{i}" for i in range(30)})  # 15 groups


def test_log_list_for_a_witness() -> None:
    other = Signer("other.example/log", bytes(32))
    logs = parse_log_list(f"# logs\nlog {LOG_KEY.verifier.vkey}\nlog {other.verifier.vkey} u\n")
    assert [log.origin for log in logs] == [ORIGIN, "other.example/log"]
    with pytest.raises(InvalidInput, match="only 'log"):
        parse_log_list(f"witness a {vkey(X[1])}\n")
    with pytest.raises(InvalidInput, match="listed"):
        parse_log_list(f"log {LOG_KEY.verifier.vkey}\nlog {LOG_KEY.verifier.vkey}\n")


def test_k_of_n() -> None:
    known = [cosigner(X[1]), cosigner(X[2]), cosigner(X[3])]
    policy = k_of_n(known, 2, [LOG_KEY.verifier])
    assert parse_policy(format_policy(policy)) == policy
    assert policy.groups[0].threshold == 2
    assert policy.is_satisfied({known[0].key_id, known[2].key_id})
    assert not policy.is_satisfied({known[0].key_id})
    assert k_of_n(known, 0).quorum == "none"
    for bad in (-1, 4):
        with pytest.raises(InvalidInput, match="quorum"):
            k_of_n(known, bad)


# --- verifying checkpoints under a policy ---------------------------------------------------


def cosigned(log: MemLog, *signers: Signer) -> str:
    cp = log.checkpoint()
    for s in signers:
        cp = cosign_checkpoint(cp, s, 1_700_000_000)
    return cp


def test_verify_checkpoint_with_the_spec_example() -> None:
    policy = parse_policy(EXAMPLE)
    log = MemLog().extend(9)
    seen = verify_checkpoint(cosigned(log, X[1], X[3], Y[2]), policy)
    assert seen.checkpoint.size == 9
    assert seen.cosigners == (cosigner(X[1]), cosigner(X[3]), cosigner(Y[2]))
    with pytest.raises(QuorumNotMet, match=r"quorum X-and-Y: group X-and-Y needs 2") as exc:
        verify_checkpoint(cosigned(log, X[1], X[2], X[3]), policy)
    assert "group Y-witnesses needs 1 of Y1, Y2, Y3, has 0" in exc.value.message


def test_verify_checkpoint_needs_a_listed_log() -> None:
    other = Signer("other.example/log", bytes(32))
    with pytest.raises(VerificationError, match="no log in the policy") as exc:
        verify_checkpoint(cosigned(MemLog(other).extend(1)), parse_policy("quorum none\n"))
    assert exc.value.reason == "UNKNOWN_LOG"
    policy = parse_policy(f"log {LOG_KEY.verifier.vkey}\nquorum none\n")
    assert verify_checkpoint(cosigned(MemLog().extend(1)), policy).cosignatures == ()
    impostor = Signer(ORIGIN, bytes(32))  # right origin, wrong key
    with pytest.raises(VerificationError, match="no verifiable signatures"):
        verify_checkpoint(cosigned(MemLog(impostor).extend(1)), policy)


def test_policy_with_a_single_witness_quorum() -> None:
    text = f"log {LOG_KEY.verifier.vkey}\nwitness czj {vkey(X[1])}\nquorum czj\n"
    policy = parse_policy(text)
    verify_checkpoint(cosigned(MemLog().extend(3), X[1]), policy)
    with pytest.raises(QuorumNotMet, match="no cosignature from witness czj"):
        verify_checkpoint(cosigned(MemLog().extend(3), X[2]), policy)


def test_the_empty_policy_formats_as_its_quorum_line() -> None:
    assert format_policy(Policy((), (), (), "none")) == "quorum none\n"

"""Transparency-log trust policies (c2sp.org/tlog-policy): which logs, which witnesses,
and the quorum of cosignatures that makes a checkpoint valid.

::

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> all|any|<k> <name>...
    quorum <name>|none

``parse_policy`` reads the text, ``format_policy`` writes it back (comments and spacing are
not kept), ``verify_checkpoint`` opens a checkpoint under a policy. A file with only
``log`` lines (and comments) is what ``parse_log_list`` reads: a witness's configuration.

Decisions where the spec is silent or loose:

* Keys: log keys are Ed25519 note keys (type 0x01, ``ledger.keys.Verifier``), witness keys
  Ed25519 cosignature/v1 keys (type 0x04, ``CosignatureVerifier``), "a signature type
  appropriate [to the] respective function". A type 0x01 key on a ``witness`` line is
  refused, and the error shows the type 0x04 spelling of the same key (some tools accept
  0x01 witness keys and convert them; the spec does not).
* "Each defined name can be listed as a group member at most once" is read across the
  whole file: a name belongs to at most one group, so the quorum is a tree and no witness
  counts twice.
* A numeric threshold is ASCII digits (leading zeros allowed: "written in decimal").
* The last line may lack its newline; a carriage return is a forbidden control character.
* Names are compared as octet strings: the text is decoded as UTF-8 with
  ``surrogateescape``, so bytes that are not UTF-8 survive, distinct, and round-trip.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ledger.checkpoint import ALG_COSIGNATURE_V1, CosignatureVerifier
from ledger.errors import InvalidInput, VerificationError
from ledger.keys import ALG_ED25519, Verifier, b64decode_canonical
from ledger.note import parse_note
from ledger.witness import (
    QuorumNotMet,
    WitnessedCheckpoint,
    check_distinct_witnesses,
    verify_cosignatures,
)

NONE = "none"  # the predefined name of the empty quorum
_FIELD_SEP = re.compile(r"[ \t]+")  # "whitespace" is ASCII space and tab *only*
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class PolicyLog:
    """``log <vkey> [<url>]``: the key's name is the log's origin."""

    key: Verifier
    url: str | None = None

    @property
    def origin(self) -> str:
        return self.key.name


@dataclass(frozen=True)
class PolicyWitness:
    """``witness <name> <vkey> [<url>]``; ``url`` is the witness's submission prefix."""

    name: str
    key: CosignatureVerifier
    url: str | None = None


@dataclass(frozen=True)
class PolicyGroup:
    """``group <name> <k> <member>...``: witnessed when at least ``threshold`` of the
    members (witnesses or earlier groups) are. ``all`` is k = n, ``any`` is k = 1."""

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed policy. ``quorum`` names a witness, a group, or ``none``."""

    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[PolicyGroup, ...]
    quorum: str

    def witnessed(self, name: str, cosigned: Collection[str]) -> bool:
        """Whether the witness or group ``name`` has witnessed, given the names of the
        witnesses whose cosignatures verified."""
        if name == NONE:
            return True
        group = next((g for g in self.groups if g.name == name), None)
        if group is None:
            return name in cosigned
        return sum(self.witnessed(m, cosigned) for m in group.members) >= group.threshold

    def is_satisfied(self, cosigned: Collection[str]) -> bool:
        return self.witnessed(self.quorum, cosigned)

    def explain(self, cosigned: Collection[str]) -> str:
        """Which part of the quorum is not met, for an error message."""
        return "; ".join(self._unmet(self.quorum, cosigned)) or "the quorum is met"

    def _unmet(self, name: str, cosigned: Collection[str]) -> list[str]:
        if self.witnessed(name, cosigned):
            return []
        group = next((g for g in self.groups if g.name == name), None)
        if group is None:
            return [f"no cosignature from witness {name}"]
        have = sum(self.witnessed(m, cosigned) for m in group.members)
        why = [f"group {name} needs {group.threshold} of {', '.join(group.members)}, has {have}"]
        for member in group.members:
            why.extend(self._unmet(member, cosigned))
        return why


def _error(lineno: int, why: str) -> InvalidInput:
    where = f"line {lineno}: " if lineno else ""
    return InvalidInput(f"tlog policy {where}{why}", reason="MALFORMED_POLICY")


def _decode(text: str | bytes) -> str:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    for i, byte in enumerate(raw):
        # Allowed octets: tab, newline, 0x20-0x7E and 0x80-0xFF.
        if byte not in (0x09, 0x0A) and (byte < 0x20 or byte == 0x7F):
            lineno = raw.count(b"\n", 0, i) + 1
            raise _error(lineno, f"control character 0x{byte:02x} is not allowed")
    return raw.decode("utf-8", "surrogateescape")


def _lines(text: str | bytes) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every line that is not blank or a comment."""
    found = []
    for lineno, line in enumerate(_decode(text).split("\n"), 1):
        stripped = line.strip(" \t")
        if stripped and not stripped.startswith("#"):
            found.append((lineno, _FIELD_SEP.split(stripped)))
    return found


def _log_line(lineno: int, args: list[str]) -> PolicyLog:
    if len(args) not in (1, 2):
        raise _error(lineno, "want 'log <vkey> [<url>]'")
    try:
        key = Verifier.parse(args[0])
    except InvalidInput as exc:
        raise _error(lineno, f"log key: {exc.message} (logs sign with Ed25519, type 0x01)") from exc
    return PolicyLog(key, args[1] if len(args) == 2 else None)


def _witness_key(lineno: int, vkey: str) -> CosignatureVerifier:
    try:
        return CosignatureVerifier.parse(vkey)
    except InvalidInput as exc:
        hint = ""
        name, _, rest = vkey.partition("+")
        try:
            raw = b64decode_canonical(rest.partition("+")[2])
        except InvalidInput:
            raw = b""
        if len(raw) == 33 and raw[0] == ALG_ED25519:
            as_cosigner = CosignatureVerifier(name, raw[1:]).vkey
            hint = f"; the same key as a cosignature/v1 key (type 0x04) is {as_cosigner}"
        raise _error(
            lineno,
            f"witness key: {exc.message} (witnesses cosign with cosignature/v1, type "
            f"0x{ALG_COSIGNATURE_V1:02x}){hint}",
        ) from exc


def parse_log_list(text: str | bytes) -> tuple[PolicyLog, ...]:
    """``log`` lines only (comments and blank lines allowed): a witness's list of logs."""
    logs: list[PolicyLog] = []
    for lineno, (keyword, *args) in _lines(text):
        if keyword != "log":
            raise _error(lineno, f"only 'log <vkey> [<url>]' lines are allowed, not {keyword!r}")
        logs.append(_log_line(lineno, args))
    _check_distinct_logs(logs)
    return tuple(logs)


def _check_distinct_logs(logs: Sequence[PolicyLog]) -> None:
    seen: set[bytes] = set()
    for log in logs:
        if log.key.public in seen:
            raise _error(0, f"log key {log.key.key_id} wraps a public key listed before")
        seen.add(log.key.public)


def parse_policy(text: str | bytes) -> Policy:
    """Parse a c2sp.org/tlog-policy file. Raises ``InvalidInput`` (MALFORMED_POLICY) with
    the line number for anything the spec does not allow."""
    logs: list[PolicyLog] = []
    witnesses: list[PolicyWitness] = []
    groups: list[PolicyGroup] = []
    quorum: str | None = None
    defined: set[str] = set()
    in_a_group: set[str] = set()
    for lineno, (keyword, *args) in _lines(text):
        if keyword == "log":
            logs.append(_log_line(lineno, args))
        elif keyword == "witness":
            witnesses.append(_witness_line(lineno, args, defined, witnesses))
            defined.add(witnesses[-1].name)
        elif keyword == "group":
            groups.append(_group_line(lineno, args, defined, in_a_group))
            defined.add(groups[-1].name)
        elif keyword == "quorum":
            if quorum is not None:
                raise _error(lineno, "a policy has exactly one quorum line")
            if len(args) != 1:
                raise _error(lineno, "want 'quorum <name>'")
            if args[0] != NONE and args[0] not in defined:
                raise _error(lineno, f"quorum {args[0]!r} is not a witness or group defined above")
            quorum = args[0]
        else:
            raise _error(lineno, f"unknown keyword {keyword!r}")
    if quorum is None:
        raise _error(0, "no quorum line (write 'quorum none' to require no cosignatures)")
    _check_distinct_logs(logs)
    return Policy(tuple(logs), tuple(witnesses), tuple(groups), quorum)


def _new_name(lineno: int, name: str, defined: set[str]) -> str:
    if name == NONE:
        raise _error(lineno, "'none' is predefined and cannot name a witness or group")
    if name in defined:
        raise _error(lineno, f"{name!r} is already defined")
    return name


def _witness_line(
    lineno: int, args: list[str], defined: set[str], witnesses: Sequence[PolicyWitness]
) -> PolicyWitness:
    if len(args) not in (2, 3):
        raise _error(lineno, "want 'witness <name> <vkey> [<url>]'")
    name = _new_name(lineno, args[0], defined)
    key = _witness_key(lineno, args[1])
    for w in witnesses:
        if w.key.public == key.public:
            # Duplicates are not allowed: one key under two names would count twice.
            raise _error(lineno, f"witness {name} has the same public key as {w.name}")
    return PolicyWitness(name, key, args[2] if len(args) == 3 else None)


def _group_line(
    lineno: int, args: list[str], defined: set[str], in_a_group: set[str]
) -> PolicyGroup:
    if len(args) < 3:
        raise _error(lineno, "want 'group <name> all|any|<k> <member>...' with a member")
    name = _new_name(lineno, args[0], defined)
    spelled, members = args[1], tuple(args[2:])
    for member in members:
        if member == NONE:
            raise _error(lineno, "'none' cannot be a group member")
        if member not in defined:
            raise _error(lineno, f"member {member!r} is not a witness or group defined above")
        if member in in_a_group:
            raise _error(lineno, f"{member!r} is already a group member; a name may be one once")
        in_a_group.add(member)
    if spelled == "all":
        threshold = len(members)
    elif spelled == "any":
        threshold = 1
    elif _DIGITS.fullmatch(spelled) and 1 <= int(spelled) <= len(members):
        threshold = int(spelled)
    else:
        raise _error(
            lineno, f"threshold {spelled!r} must be all, any or a number from 1 to {len(members)}"
        )
    return PolicyGroup(name, threshold, members)


def format_policy(policy: Policy) -> str:
    """The policy as text: logs, witnesses, groups in their order, then the quorum."""

    def line(*fields: str | None) -> str:
        return " ".join(f for f in fields if f is not None) + "\n"

    out = [line("log", log.key.vkey, log.url) for log in policy.logs]
    out += [line("witness", w.name, w.key.vkey, w.url) for w in policy.witnesses]
    for g in policy.groups:
        n = len(g.members)
        spelled = "all" if g.threshold == n else "any" if g.threshold == 1 else str(g.threshold)
        out.append(line("group", g.name, spelled, *g.members))
    out.append(line("quorum", policy.quorum))
    return "".join(out)


def k_of_n(
    witnesses: Sequence[CosignatureVerifier], k: int, logs: Sequence[Verifier] = ()
) -> Policy:
    """The policy "``k`` of these witnesses" (``quorum none`` when k is 0), each witness
    named by its key ID (name+hex8), which is unique where key names need not be."""
    if isinstance(k, bool) or not 0 <= k <= len(witnesses):
        raise InvalidInput(
            f"quorum {k!r} must be between 0 and the {len(witnesses)} witnesses",
            reason="BAD_QUORUM",
        )
    entries = tuple(PolicyWitness(w.key_id, w) for w in witnesses)
    log_entries = tuple(PolicyLog(key) for key in logs)
    if k == 0:
        return Policy(log_entries, entries, (), NONE)
    group = PolicyGroup(f"{k}-of-{len(entries)}", k, tuple(w.name for w in entries))
    return Policy(log_entries, entries, (group,), group.name)


def demanded(
    witnesses: Sequence[str], quorum: int | None, policy_text: str | bytes | None
) -> Policy | None:
    """The witnesses a verifier demands: a tlog-policy file's text, or ``quorum`` of the
    witness vkeys given (every one when ``quorum`` is None); None when neither is given.
    ``InvalidInput`` for both at once, a quorum without witnesses, or a bad key."""
    if policy_text is not None:
        if witnesses or quorum is not None:
            raise InvalidInput("give the witnesses and quorum, or a policy file, not both")
        return parse_policy(policy_text)
    if not witnesses:
        if quorum is not None:
            raise InvalidInput("a quorum needs the witnesses' keys")
        return None
    keys = [CosignatureVerifier.parse(vkey) for vkey in witnesses]
    return k_of_n(keys, len(keys) if quorum is None else quorum)


def cosigners(signed_checkpoint: str | bytes, policy: Policy) -> frozenset[str]:
    """The names of the policy's witnesses whose cosignatures on ``signed_checkpoint``
    verify. The log's own signature is not checked here: for a caller that has verified it
    another way (``suanli audit verify`` follows the log's key chain from the pinned
    genesis key). A known witness's line that does not verify rejects the note
    (c2sp.org/signed-note)."""
    check_distinct_witnesses([w.key for w in policy.witnesses])
    note = parse_note(signed_checkpoint)
    message = note.text.encode("utf-8")
    by_id = {(w.key.name, w.key.hash): w for w in policy.witnesses}
    names: set[str] = set()
    for sig in note.signatures:
        witness = by_id.get((sig.name, sig.key_hash))
        if witness is None:
            continue
        try:
            witness.key.verify(message, sig.signature)
        except VerificationError as exc:
            raise VerificationError(
                f"the cosignature of witness {witness.name} does not verify over this checkpoint",
                reason="INVALID_COSIGNATURE",
                details={"witness": witness.key.key_id},
            ) from exc
        names.add(witness.name)
    return frozenset(names)


def require_quorum(signed_checkpoint: str | bytes, policy: Policy) -> frozenset[str]:
    """``cosigners`` when they meet the policy's quorum; ``QuorumNotMet`` saying which part
    is missing when they do not."""
    names = cosigners(signed_checkpoint, policy)
    text = parse_note(signed_checkpoint).text.split("\n")
    _demand(policy, names, text[0], text[1] if len(text) > 1 else "?")
    return names


def _demand(policy: Policy, names: frozenset[str], origin: str, size: int | str) -> None:
    if not policy.is_satisfied(names):
        raise QuorumNotMet(
            f"checkpoint {origin!r} at size {size} does not meet the policy's quorum "
            f"{policy.quorum}: {policy.explain(names)}",
            details={"quorum": policy.quorum, "cosigned": ",".join(sorted(names))},
        )


def verify_checkpoint(signed_checkpoint: str | bytes, policy: Policy) -> WitnessedCheckpoint:
    """Open a checkpoint under ``policy``: signed by a key of one of its logs, with the
    origin that key names, and cosigned according to the quorum. Raises ``QuorumNotMet``
    saying which part of the quorum is missing, ``VerificationError`` if no listed log has
    the checkpoint's origin, or what ``verify_cosignatures`` raises."""
    # The origin line picks the log's keys; nothing in the text is trusted before they
    # have verified it (verify_cosignatures checks the origin again, after).
    claimed = parse_note(signed_checkpoint).text.split("\n", 1)[0]
    keys = [log.key for log in policy.logs if log.origin == claimed]
    if not keys:
        raise VerificationError(
            f"no log in the policy has the checkpoint's origin {claimed!r}",
            reason="UNKNOWN_LOG",
        )
    seen = verify_cosignatures(
        signed_checkpoint,
        log_keys=keys,
        witnesses=[w.key for w in policy.witnesses],
        origin=claimed,
    )
    names = frozenset(w.name for w in policy.witnesses if w.key in seen.cosigners)
    _demand(policy, names, seen.checkpoint.origin, seen.checkpoint.size)
    return seen

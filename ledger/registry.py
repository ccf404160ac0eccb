"""The key registry, kept in the log itself.

The log alone says which key may sign what, and from when to when:

* ``log.genesis`` (index 0 only) names the log's origin and its first log key, and must be
  signed by that key. The log key also holds the ``registry`` role: it registers and retires
  every other key.
* ``key.register`` adds a key with roles (``issuer``, ``service``, ``centre`` with the centre
  id, ``registry``); it may sign entries from the next index on.
* ``key.retire`` ends a key; it signs nothing from that index on.
* ``log.rotate`` hands the log over to a new key, signed by the old key and the new one
  (so the new key's holder proves possession). The new key takes over at size ``index + 1``,
  the first tree that contains the rotation: checkpoints of smaller sizes stay signed by, and
  verifiable with, the old key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from immutables import Map

from ledger.entry import Entry
from ledger.errors import Denied, InvalidInput, NotFound
from ledger.keys import Verifier

ROLES = frozenset({"log", "registry", "issuer", "service", "centre"})


@dataclass(frozen=True)
class RegisteredKey:
    verifier: Verifier
    roles: frozenset[str]
    centre: str | None
    from_index: int  # first log index this key may sign
    until_index: int | None = None  # first log index it may no longer sign

    def active_at(self, index: int) -> bool:
        return self.from_index <= index and (self.until_index is None or index < self.until_index)


@dataclass(frozen=True)
class LogKeyEpoch:
    """The log key in force for checkpoints of size >= from_size."""

    verifier: Verifier
    from_size: int


@dataclass
class KeyRegistry:
    """Every key the log has registered. Its collections are persistent; only a draft's
    copy (``LedgerState.edit_registry``) is ever changed, by putting new values in."""

    keys: Map[str, RegisteredKey] = field(default_factory=Map)
    origin: str | None = None
    log_epochs: tuple[LogKeyEpoch, ...] = ()

    def get(self, key_id: str) -> RegisteredKey:
        try:
            return self.keys[key_id]
        except KeyError:
            raise NotFound(f"key {key_id} is not registered in the log") from None

    def verifiers(self) -> dict[str, Verifier]:
        return {key_id: k.verifier for key_id, k in self.keys.items()}

    def log_key_for_size(self, size: int) -> Verifier:
        chosen = None
        for epoch in self.log_epochs:
            if epoch.from_size <= size:
                chosen = epoch.verifier
        if chosen is None:
            raise NotFound(f"no log key is in force for size {size}")
        return chosen

    def authorise(self, entry: Entry, index: int, roles: Iterable[str]) -> list[RegisteredKey]:
        """The registered keys that signed ``entry``; refuse unless one may sign it at ``index``.

        This checks registration and roles only; the caller checks the signatures
        themselves (the auditor does that in parallel, the service before appending).
        """
        wanted = frozenset(roles)
        signers = []
        for sig in entry.sigs:
            key = self.keys.get(sig.key)
            if key is None:
                raise Denied(f"entry signed by unregistered key {sig.key}", reason="UNKNOWN_KEY")
            if not key.active_at(index):
                raise Denied(f"key {sig.key} is not active at index {index}", reason="KEY_INACTIVE")
            signers.append(key)
        if not any(k.roles & wanted for k in signers):
            raise Denied(
                f"{entry.kind} must be signed by a key with role {'/'.join(sorted(wanted))}",
                reason="WRONG_SIGNER",
            )
        return signers

    # --- the registry's own entries -------------------------------------------------------

    def _add(
        self, verifier: Verifier, roles: frozenset[str], centre: str | None, index: int
    ) -> None:
        if verifier.key_id in self.keys:
            raise InvalidInput(f"key {verifier.key_id} is already registered", reason="KEY_EXISTS")
        unknown = roles - ROLES
        if not roles or unknown:
            raise InvalidInput(f"roles must be a non-empty subset of {sorted(ROLES)}")
        if ("centre" in roles) != (centre is not None):
            raise InvalidInput("a centre key names exactly one centre, other keys none")
        self.keys = self.keys.set(
            verifier.key_id, RegisteredKey(verifier, roles, centre, index + 1)
        )

    def genesis(self, entry: Entry, index: int) -> None:
        if index != 0:
            raise InvalidInput("log.genesis may only be entry 0")
        origin, vkey = _str(entry, "origin"), _str(entry, "log_key")
        verifier = Verifier.parse(vkey)
        if [s.key for s in entry.sigs] != [verifier.key_id]:
            raise Denied("log.genesis must be signed by the log key it names, and only by it")
        self.origin = origin
        self._add(verifier, frozenset({"log", "registry"}), None, index)
        first = replace(self.keys[verifier.key_id], from_index=0)  # it signs its own genesis
        self.keys = self.keys.set(verifier.key_id, first)
        self.log_epochs = (LogKeyEpoch(verifier, 0),)

    def register(self, entry: Entry, index: int) -> None:
        verifier = Verifier.parse(_str(entry, "vkey"))
        roles = entry.body.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidInput("roles must be a list of strings")
        centre = entry.body.get("centre")
        if centre is not None and not isinstance(centre, str):
            raise InvalidInput("centre must be a string")
        if "log" in roles:
            raise InvalidInput("a log key comes only with log.genesis or log.rotate")
        self._add(verifier, frozenset(roles), centre, index)

    def retire(self, entry: Entry, index: int) -> None:
        key = self.get(_str(entry, "key"))
        if "log" in key.roles:
            raise InvalidInput("the log key is replaced with log.rotate, not retired")
        if key.until_index is not None:
            raise InvalidInput(f"key {key.verifier.key_id} is already retired")
        self.keys = self.keys.set(key.verifier.key_id, replace(key, until_index=index))

    def rotate(self, entry: Entry, index: int) -> None:
        new = Verifier.parse(_str(entry, "new_key"))
        old = self.log_epochs[-1].verifier
        if sorted(s.key for s in entry.sigs) != sorted([old.key_id, new.key_id]):
            raise Denied("log.rotate must be signed by the current and the new log key")
        self._add(new, frozenset({"log", "registry"}), None, index)
        self.keys = self.keys.set(old.key_id, replace(self.keys[old.key_id], until_index=index + 1))
        self.log_epochs = (*self.log_epochs, LogKeyEpoch(new, index + 1))


def _str(entry: Entry, name: str) -> str:
    value = entry.body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{entry.kind}: body.{name} must be a non-empty string")
    return value


_INTRODUCED = {"log.genesis": "log_key", "log.rotate": "new_key"}  # the member naming the key


def verify_entry_signatures(registry: KeyRegistry, entry: Entry) -> None:
    """Check every signature of ``entry`` cryptographically against the registry.

    A key the registry does not know is left to the fold, which refuses it by name
    (``UNKNOWN_KEY``) — except the keys that ``log.genesis`` and ``log.rotate`` introduce,
    which sign the very entry that registers them.
    """
    new: Verifier | None = None
    introduced = _INTRODUCED.get(entry.kind)
    if introduced and isinstance(entry.body.get(introduced), str):
        new = Verifier.parse(entry.body[introduced])
    message = entry.message()
    for sig in entry.sigs:
        registered = registry.keys.get(sig.key)
        if registered is not None:
            verifier: Verifier | None = registered.verifier
        else:
            verifier = new if new is not None and new.key_id == sig.key else None
        if verifier is not None and not verifier.is_valid(message, sig.sig):
            raise Denied(
                f"the signature by key {sig.key} does not verify",
                reason="BAD_SIGNATURE",
                details={"key": sig.key},
            )

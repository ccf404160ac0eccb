"""The log's own entries: its first entries, the key registry, log key rotation, notes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger.errors import LedgerError
from ledger.keys import Signer
from ledger.policy import Policy
from ledger.usecases.commands.round import publish_round
from ledger.usecases.unit_of_work import Appended, UnitOfWork


def log_signer(uow: UnitOfWork) -> Signer:
    """The log key in force now (after a rotation, the new one), as the service holds it."""
    epochs = uow.state.registry.log_epochs
    if not epochs:
        return uow.keys.log
    key_id = epochs[-1].verifier.key_id
    signer = uow.keys.log_key(key_id)
    if signer is None:
        raise LedgerError(
            f"the log key in force is {key_id}, but this service holds {uow.keys.log.key_id}",
            reason="WRONG_LOG_KEY",
        )
    return signer


def start_log(
    uow: UnitOfWork, *, origin: str, centre_keys: Mapping[str, Signer], policy: Policy
) -> None:
    """The log's first entries: the genesis (the log key), the issuer, service and centre
    keys, and the round in force with its centres and rate cards."""
    keys = uow.keys
    genesis = {"origin": origin, "log_key": keys.log.verifier.vkey}
    uow.append(uow.sign("log.genesis", genesis, keys.log))
    register_key(uow, vkey=keys.issuer.verifier.vkey, roles=["issuer"])
    register_key(uow, vkey=keys.service.verifier.vkey, roles=["service"])
    for centre, signer in sorted(centre_keys.items()):
        register_key(uow, vkey=signer.verifier.vkey, roles=["centre"], centre=centre)
    publish_round(uow, policy)


def register_key(
    uow: UnitOfWork, *, vkey: str, roles: Sequence[str], centre: str | None = None
) -> Appended:
    """Register a key (a C2SP verifier key string) with its roles; a centre key names its centre."""
    body: dict[str, Any] = {"vkey": vkey, "roles": list(roles)}
    if centre is not None:
        body["centre"] = centre
    return uow.append(uow.sign("key.register", body, log_signer(uow)))


def retire_key(uow: UnitOfWork, *, key_id: str) -> Appended:
    """Retire a registered key: it signs nothing from this entry on."""
    return uow.append(uow.sign("key.retire", {"key": key_id}, log_signer(uow)))


def rotate_log_key(uow: UnitOfWork, new: Signer) -> Appended:
    """Hand the log over to ``new``: ``log.rotate`` signed by the current log key and the new
    one. The store signs this commit's checkpoint with ``new``, so the service must hold it
    (``ServiceKeys.with_log_key``) before this runs."""
    body = {"new_key": new.verifier.vkey}
    return uow.append(uow.sign("log.rotate", body, log_signer(uow), new))


def write_note(uow: UnitOfWork, text: str) -> Appended:
    """A signed remark in the log (maintenance, an incident, a notice), by the service key."""
    return uow.append(uow.sign("log.note", {"text": text}, uow.keys.service))

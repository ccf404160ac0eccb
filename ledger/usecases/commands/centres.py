"""Centres come and go: a centre's signing key added, rotated, and every key of a centre
retired. Each is a ``key.register`` or ``key.retire`` entry signed by the log key (the
registry role), through ``ledger.usecases.commands.log``. The centre itself and its rate
cards come with a policy version (``publish_round``): a centre redeems only vouchers of
programmes that accept it, and the policy says which."""

from __future__ import annotations

from dataclasses import dataclass

from ledger import claims
from ledger.errors import Conflict, NotFound
from ledger.keys import Verifier
from ledger.policy import Policy
from ledger.providers import ProviderSpec
from ledger.registry import RegisteredKey
from ledger.state import LedgerState
from ledger.usecases.commands.log import register_key, retire_key
from ledger.usecases.commands.round import RoundPublished, publish_round
from ledger.usecases.unit_of_work import Appended, UnitOfWork


@dataclass(frozen=True)
class KeysChanged:
    registered: Appended | None  # the key.register entry, if a key was added
    retired: list[Appended]  # the key.retire entries
    round: RoundPublished | None = None  # the policy version published with it, if any


def active_centre_keys(state: LedgerState, centre: str) -> list[RegisteredKey]:
    """The keys that may sign for ``centre`` from the next entry on."""
    return [
        k
        for k in state.registry.keys.values()
        if k.centre == centre and "centre" in k.roles and k.until_index is None
    ]


def _known_centre(state: LedgerState, centre: str) -> None:
    if centre not in claims.book(state).centres:
        raise NotFound(
            f"centre {centre} is not registered in the log: publish a policy version that "
            "names it (its programmes and rate card) first",
            reason="UNKNOWN_CENTRE",
        )


def add_centre_key(uow: UnitOfWork, *, centre: str, vkey: str) -> KeysChanged:
    """Register ``vkey`` as ``centre``'s signing key; refused if the centre already has an
    active key (that is a rotation) or is not in the log."""
    Verifier.parse(vkey)  # a malformed key string is refused before anything is signed
    _known_centre(uow.state, centre)
    active = active_centre_keys(uow.state, centre)
    if active:
        raise Conflict(
            f"centre {centre} already has an active key ({active[0].verifier.key_id}): "
            "rotate it instead",
            reason="CENTRE_HAS_KEY",
        )
    return KeysChanged(register_key(uow, vkey=vkey, roles=["centre"], centre=centre), [])


def add_centre(
    uow: UnitOfWork, *, centre: str, vkey: str, policy: Policy | None = None
) -> KeysChanged:
    """Onboard a centre in one commit: the policy version that names it (its rate card and
    the programmes that accept it), if given, then its signing key. Either refused, nothing
    is written."""
    Verifier.parse(vkey)
    published = publish_round(uow, policy) if policy is not None else None
    added = add_centre_key(uow, centre=centre, vkey=vkey)
    return KeysChanged(added.registered, [], published)


def register_provider(uow: UnitOfWork, *, provider: ProviderSpec, vkey: str) -> KeysChanged:
    """Register a provider as data, in one commit: the centre (``centre.register``), its
    first rate card (``ratecard.publish``), both signed by the issuer, and its signing key.
    No policy version names it: rounds that accept any registered provider take its claims
    from the next entry on, rounds that whitelist their centres refuse them
    (``CENTRE_NOT_ACCEPTED``). Either all is written or, refused, nothing."""
    Verifier.parse(vkey)
    centre, card = provider.centre, provider.rate_card
    issuer = uow.keys.issuer
    uow.append(
        uow.sign("centre.register", claims.centre_body(centre.id, centre.name, centre.kind), issuer)
    )
    body = claims.ratecard_body(centre.id, card.version, card.effective_from, card.prices)
    uow.append(uow.sign("ratecard.publish", body, issuer))
    return add_centre_key(uow, centre=centre.id, vkey=vkey)


def rotate_centre_key(uow: UnitOfWork, *, centre: str, vkey: str) -> KeysChanged:
    """Register ``vkey`` for ``centre`` and retire its keys in force, in one commit: the
    new key signs from the next entry on, the old ones no longer."""
    Verifier.parse(vkey)
    _known_centre(uow.state, centre)
    old = active_centre_keys(uow.state, centre)
    registered = register_key(uow, vkey=vkey, roles=["centre"], centre=centre)
    retired = [retire_key(uow, key_id=k.verifier.key_id) for k in old]
    return KeysChanged(registered, retired)


def retire_centre(uow: UnitOfWork, *, centre: str) -> KeysChanged:
    """Retire every key of ``centre``: from here on it can sign no claim, hold or capture."""
    _known_centre(uow.state, centre)
    old = active_centre_keys(uow.state, centre)
    if not old:
        raise Conflict(f"centre {centre} has no active key", reason="CENTRE_RETIRED")
    return KeysChanged(None, [retire_key(uow, key_id=k.verifier.key_id) for k in old])

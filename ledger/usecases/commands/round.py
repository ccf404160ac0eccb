"""Publishing a round: a policy version, the centres new in it and their rate cards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger import claims
from ledger.errors import Conflict
from ledger.policy import Policy, publish_body
from ledger.state import LedgerState
from ledger.usecases.unit_of_work import Appended, UnitOfWork


@dataclass(frozen=True)
class RoundPublished:
    entry: Appended  # the policy.publish entry
    centres: list[str]  # centres registered with it
    rate_cards: list[str]  # "centre@version" of the rate cards published with it


def publish_round(
    uow: UnitOfWork, policy: Policy | Mapping[str, Any], supersedes: str | None = None
) -> RoundPublished:
    """Publish a policy version (a ``Policy`` or a policy document, checked as
    ``Policy.from_json`` reads one), register the centres it names that the log does not
    know, and publish its rate cards that are not published yet, all signed by the issuer.

    A rate card already published under the same version with the same prices and start is
    not published again; one that differs is refused (``RATECARD_VERSION``): a change needs
    the next version number. ``supersedes`` names the version in force that this one
    replaces; it is required to bring a version published before back into force.
    Everything else (a version already published, rate cards out of order) the fold
    decides when the entry is appended.
    """
    body = publish_body(policy, supersedes)
    parsed = policy if isinstance(policy, Policy) else Policy.from_json(body["policy"])
    state = uow.state
    known = claims.book(state).centres
    centres = [
        claims.centre_body(c.id, c.name, c.kind)
        for c in parsed.centres.values()
        if c.id not in known
    ]
    cards = _new_rate_cards(state, parsed)
    issuer = uow.keys.issuer
    done = uow.append(uow.sign("policy.publish", body, issuer))
    for centre in centres:
        uow.append(uow.sign("centre.register", centre, issuer))
    for card in cards:
        uow.append(uow.sign("ratecard.publish", card, issuer))
    return RoundPublished(
        done,
        [c["centre"] for c in centres],
        [f"{c['centre']}@{c['version']}" for c in cards],
    )


def _new_rate_cards(state: LedgerState, policy: Policy) -> list[dict[str, Any]]:
    """Bodies of the policy's rate cards the log does not have yet."""
    centres = claims.book(state).centres
    bodies = []
    for card in policy.rate_cards:
        centre = centres.get(card.centre)
        published = {c.version: c for c in centre.rate_cards} if centre else {}
        old = published.get(card.version)
        if old is None:
            body = claims.ratecard_body(card.centre, card.version, card.effective_from, card.prices)
            bodies.append(body)
        elif dict(old.prices) != dict(card.prices) or old.effective_from != card.effective_from:
            raise Conflict(
                f"rate card {card.version} of {card.centre} is already published with "
                "other prices or start; give the change the next version number",
                reason="RATECARD_VERSION",
            )
    return bodies

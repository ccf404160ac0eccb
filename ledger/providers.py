"""Which providers a programme or a voucher accepts: a whitelist of centre ids, or every
provider registered in the log.

A round written when the city had two centres names them (成经信财〔2023〕31号: (三) the
supercomputing centre only, (四)(五)(六) both); later rounds open redemption to any
registered 算力服务机构, so that a provider joins by being registered (``centre.register``,
``ratecard.publish`` and its key), without a new version of every round. A programme's or a
voucher's ``centres`` is then the one word :data:`ANY_REGISTERED`, which can never be a
centre id (ids are ``a-z 0-9 -``, see ``ledger.usage.check_centre_id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.policy import Centre, RateCardSpec

ANY_REGISTERED = "any_registered"


def accepts(accepted: Sequence[str], centre: str) -> bool:
    """Whether ``accepted`` (a programme's or a voucher's ``centres``) lets the registered
    centre ``centre`` redeem. Whether it is registered is the claim's own check."""
    return ANY_REGISTERED in accepted or centre in accepted


def describe(accepted: Sequence[str]) -> str:
    """``nscc-cd, cd-icc`` or ``any registered provider``, for messages."""
    return "any registered provider" if ANY_REGISTERED in accepted else ", ".join(accepted)


@dataclass(frozen=True)
class ProviderSpec:
    """A provider to register as data (a ``suanli-provider/v1`` file, read by
    ``ledger.policy_read.read_provider``): the centre and its first rate card."""

    centre: Centre
    rate_card: RateCardSpec

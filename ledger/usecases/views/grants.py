"""One-time grants: what a programme's calculator gives for some inputs, and a grant paid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger import grants
from ledger.errors import Refused
from ledger.policy import Programme, current_policy
from ledger.reader import Reader
from ledger.state import LedgerState


def _calculator_inputs(programme: Programme, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs a programme's calculator (and its entity cap) read, typed and checked."""
    calc = programme.calculator
    if calc is None:
        raise Refused(f"{programme.label} has no grant calculator", reason="NOT_A_GRANT_PROGRAMME")
    names = {
        "rank_tiers": [calc.rank_input],
        "per_rack": [calc.racks_input, calc.cost_input],
        "investment_share": [calc.amount_input],
    }[calc.kind]
    cap = programme.entity_cap
    if cap is not None and cap.by_input is not None:
        names.append(cap.by_input)
    r = Reader(dict(inputs), "body.inputs")
    r.obj(names, [n for n in programme.inputs if n not in names])
    return {n: programme.inputs[n].read(r) for n in names}


def calculate_grant(
    state: LedgerState, programme_id: str, inputs: Mapping[str, Any]
) -> dict[str, Any]:
    """What a one-time grant programme of the policy in force gives for ``inputs``: the
    calculator's figure, the entity cap, and the amount within it (writes nothing)."""
    policy = current_policy(state)
    programme = policy.programme(programme_id)
    read = _calculator_inputs(programme, inputs)
    assert programme.calculator is not None
    return {
        "programme": programme.id,
        "calculator": programme.calculator.kind,
        "calculated_fen": grants.calculate(programme, read),
        "entity_cap_fen": None
        if programme.entity_cap is None
        else programme.entity_cap.for_inputs(read),
        "amount_fen": grants.grant_amount(programme, read),
        "policy_version": policy.version,
    }

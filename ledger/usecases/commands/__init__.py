"""Write use cases: each a plain function over a unit of work (``ledger.usecases.UnitOfWork``).

A use case reads the working state, builds entry bodies with the domain's builders, signs
them with the service's keys and appends them; the fold decides every rule when the entry
is appended (a refusal raises and appends nothing). The modules go by area:

* ``log``: the log's first entries, the key registry, log key rotation, notes;
* ``round``: publishing a policy version with its centres and rate cards;
* ``entities``: registering, blacklisting and unblacklisting entities;
* ``applications``: submitting, reviewing and deciding applications;
* ``vouchers``: issuing vouchers, changing their status, paying one-time grants;
* ``redemption``: the centres' claims, holds, captures and voids, exactly once;
* ``corrections``: reversals and clawbacks;
* ``settlement``: settlement statements;
* ``reimbursement``: post-hoc reimbursement claims, their review, decision and payment.
"""

"""The witness: ``suanli witness serve``, a C2SP tlog-witness HTTP server with its own key
and its own database, and the client a log uses to ask witnesses for cosignatures.

The decision is ``ledger.witness``; the durable record ``ledger.store.witness_state``;
this package is wiring: ``service`` (key, store, clock), ``app`` (HTTP), ``cli`` (the
typer sub-app), ``client`` (``submit_checkpoint``). See docs/witness.md.
"""

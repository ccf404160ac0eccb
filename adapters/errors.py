"""The centre side's errors: one base, :class:`CentreError`, for everything it raises on
purpose (the ledger's own refusals arrive as ``adapters.client.RedemptionError``)."""

from __future__ import annotations


class CentreError(Exception):
    """Base of every error the centre side raises on purpose."""


class AgentError(CentreError):
    """A problem the agent cannot retry its way out of (bad source, credentials, setup)."""

"""The centres' rate cards as the agent prices usage with them, exactly as the ledger does:
``floor(quantity × price_fen / per_units)`` with the card in force at the usage start."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.errors import AgentError, CentreError
from ledger.errors import InvalidInput
from ledger.policy import Price
from ledger.policy_read import read_prices
from ledger.reader import Reader
from ledger.timeutil import format_time, parse_local, parse_time
from ledger.usage import UsageRecord


@dataclass(frozen=True)
class Card:
    """One rate card of a centre, as the ledger published it."""

    centre: str
    version: int  # 1, 2, ... per centre
    effective_from: datetime  # in force from then until the next version
    prices: Mapping[str, Price]  # by resource


class Unpriced(CentreError):
    """A usage record the rate cards cannot price (``reason``: NO_RATE_CARD, UNKNOWN_RESOURCE)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class RateBook:
    """The centres' rate cards, each in force from its ``effective_from`` until the next."""

    cards: dict[str, list[Card]] = field(default_factory=dict)
    origin: str = ""

    def add(self, card: Card) -> None:
        cards = self.cards.setdefault(card.centre, [])
        cards.append(card)
        cards.sort(key=lambda c: (c.effective_from, c.version))

    def card_at(self, centre: str, moment: datetime) -> Card | None:
        found = None
        for card in self.cards.get(centre, []):
            if card.effective_from <= moment:
                found = card
        return found

    def cost(self, usage: UsageRecord) -> int:
        """The cost in fen, as the ledger computes it; ``Unpriced`` when there is no price."""
        card = self.card_at(usage.centre, usage.start)
        if card is None:
            raise Unpriced(
                "NO_RATE_CARD",
                f"no rate card of {usage.centre} in force at {format_time(usage.start)}"
                f" (rate cards from {self.origin})",
            )
        price = card.prices.get(usage.resource)
        if price is None:
            raise Unpriced(
                "UNKNOWN_RESOURCE",
                f"rate card {card.version} of {usage.centre} has no price for"
                f" {usage.resource!r} (priced: {', '.join(sorted(card.prices))})",
            )
        return price.cost(usage.quantity)

    def fingerprint(self) -> str:
        parts = [
            [c.centre, c.version, format_time(c.effective_from),
             {k: [p.price_fen, p.per_units] for k, p in sorted(c.prices.items())}]
            for cards in self.cards.values()
            for c in cards
        ]  # fmt: skip
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    # -- loading --

    @classmethod
    def load(
        cls,
        spec: str = "builtin",
        timeout: float = 30.0,
        token: str | None = None,
        centre: str | None = None,
    ) -> RateBook:
        """``builtin`` (the packaged policy's development cards, which a fresh ledger
        publishes at genesis), ``http(s)://HOST:PORT`` (the ledger's published cards: with
        ``centre``, that centre's from ``/v1/centres/<centre>/rate-cards``, which the
        centre's own token reads; without, every centre's ``ratecard.publish`` entries from
        the auditor API) or a JSON file (a policy file, or a list of rate card bodies
        ``{centre, version, effective_from, prices}``)."""
        if spec == "builtin":
            from ledger.policy import Policy

            book = cls(origin="the packaged policy (development defaults)")
            for spec_card in Policy.load().rate_cards:
                book.add(
                    Card(
                        spec_card.centre,
                        spec_card.version,
                        spec_card.effective_from,
                        spec_card.prices,
                    )
                )
            return book
        if spec.startswith(("http://", "https://")):
            if centre is not None:
                return cls._centre_cards(spec.rstrip("/"), centre, timeout, token)
            return cls._from_http(spec.rstrip("/"), timeout, token)
        path = Path(spec)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AgentError(f"rate cards {spec}: {exc}") from exc
        bodies = doc.get("rate_cards") if isinstance(doc, dict) and "rate_cards" in doc else doc
        if isinstance(bodies, dict):
            bodies = [bodies]
        if not isinstance(bodies, list):
            raise AgentError(f"rate cards {spec}: expected a list of rate cards")
        book = cls(origin=str(path))
        for i, body in enumerate(bodies):
            book.add(_card(body, f"{path}[{i}]"))
        return book

    @classmethod
    def _centre_cards(cls, base: str, centre: str, timeout: float, token: str | None) -> RateBook:
        return _centre_cards(base, centre, timeout, token)

    @classmethod
    def _from_http(cls, base: str, timeout: float, token: str | None) -> RateBook:
        import httpx

        book = cls(origin=f"{base} (ratecard.publish entries)")
        after = -1
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with httpx.Client(timeout=timeout, headers=headers) as http:
                while True:
                    reply = http.get(
                        f"{base}/v1/audit/entries",
                        params={"kind": "ratecard.publish", "after": after, "limit": 1000},
                    )
                    reply.raise_for_status()
                    page = reply.json()
                    for item in page["entries"]:
                        book.add(_card(item["entry"]["body"], f"entry {item['index']}"))
                    if page.get("next_after") is None:
                        break
                    after = int(page["next_after"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise AgentError(f"cannot read rate cards from {base}: {exc}") from exc
        return book


def _centre_cards(base: str, centre: str, timeout: float, token: str | None) -> RateBook:
    """One centre's published cards, page by page, as its own token reads them."""
    import httpx

    book = RateBook(origin=f"{base}/v1/centres/{centre}/rate-cards")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    after = 0
    try:
        with httpx.Client(timeout=timeout, headers=headers) as http:
            while True:
                reply = http.get(
                    f"{base}/v1/centres/{centre}/rate-cards", params={"after": after, "limit": 100}
                )
                if reply.status_code >= 400:
                    raise AgentError(
                        f"cannot read {centre}'s rate cards from {base}: HTTP"
                        f" {reply.status_code}: {_problem(reply)}"
                    )
                page = reply.json()
                for i, body in enumerate(page["rate_cards"]):
                    book.add(_card(body, f"{book.origin}[{i}]"))
                if page.get("next_after") is None:
                    return book
                after = int(page["next_after"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise AgentError(f"cannot read {centre}'s rate cards from {base}: {exc}") from exc


def _problem(reply: Any) -> str:
    try:
        doc = reply.json()
    except ValueError:
        return str(reply.text)[:200]
    return str(doc.get("detail") or doc.get("title") or doc)[:300]


def _card(body: Any, where: str) -> Card:
    try:
        r = Reader(body, where).obj(
            ["centre", "version", "effective_from", "prices"],
            ["development_default", "note", "index"],
        )
        when = r.text("effective_from", max_len=64)
        effective = parse_local(when, end=False) if len(when) <= 16 else parse_time(when)
        return Card(
            r.text("centre", max_len=32),
            r.integer("version", minimum=1),
            effective,
            read_prices(r),
        )
    except InvalidInput as exc:
        raise AgentError(f"rate card {where}: {exc.message}") from exc

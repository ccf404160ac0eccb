"""Erasure: a closed application's personal data deleted, the log still verifiable.

The leaves of an application's entries hold only digests of its restricted members
(``ledger.publication``); the values are in the disclosures beside the log. An ``erase``
entry, signed by the bureau's issuer key, names a **rejected** application, each of its
entries with the members it held concealed, and the reason (public: the reason says why,
never whose). When it is appended the store deletes those entries' disclosures and leaves a
marker in their place (``ledger.disclosure.erasure_marker``); the fold forgets the
application. Approved applications are never erased: their voucher, grants and the
published recipient (公示) depend on them.

Every signature, tree and checkpoint still verifies, because the leaves are unchanged.
Replaying the log afterwards (a restart, a full audit) meets the erased entries before the
``erase`` entry: :func:`apply_erased` takes each one *blind* (its signers and time are
checked as always; what it decided cannot be, without its values) and keeps it waiting;
the ``erase`` entry must then name exactly the entries waiting for it. The state after
the ``erase`` entry is the same either way, and the audit reports the erased entries as
erased, not as checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from immutables import Map

from ledger import applications
from ledger.disclosure import digests
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidInput, LogCorrupt, NotFound, Refused
from ledger.publication import restricted
from ledger.reader import Reader, body_reader
from ledger.state import Context, LedgerState, Result

# The kinds an erasure may reach: an application's own entries.
ERASABLE_KINDS = frozenset({"application.submit", "application.review", "application.decide"})
ERASABLE_STATUS = "rejected"
MAX_REASON = 500


@dataclass(frozen=True)
class Erased:
    """One entry an erasure reaches: its index, kind and the members it held concealed."""

    index: int
    kind: str
    fields: tuple[str, ...]

    def to_body(self) -> dict[str, object]:
        return {"index": self.index, "kind": self.kind, "fields": list(self.fields)}


@dataclass(frozen=True)
class Waiting:
    """An entry replayed without its disclosures, waiting for the erase entry that took them."""

    application: str
    kind: str
    concealed: int  # how many digests its leaf lists
    erased_by: int


@dataclass
class ErasureBook:
    waiting: Map[int, Waiting] = field(default_factory=Map)
    erased: Map[int, int] = field(default_factory=Map)  # entry index -> the erase entry's


def book(state: LedgerState) -> ErasureBook:
    part: ErasureBook = state.part("erasure", ErasureBook)
    return part


def openings_of(app: applications.Application) -> list[Erased]:
    """The application's entries and the members each concealed, as the fold recorded them."""
    found = [Erased(app.index, "application.submit", _names("application.submit", {}))]
    if app.review is not None:
        optional = {"note": bool(app.review.note)}
        found.append(
            Erased(app.review.index, "application.review", _names("application.review", optional))
        )
    if app.decision is not None:
        optional = {
            "note": bool(app.decision.note),
            "amount_fen": app.decision.decision == "approve",
        }
        found.append(
            Erased(app.decision.index, "application.decide", _names("application.decide", optional))
        )
    return found


def _names(kind: str, optional: dict[str, bool]) -> tuple[str, ...]:
    return tuple(sorted(n for n in restricted(kind) if optional.get(n, True)))


def erase_body(state: LedgerState, application_id: str, reason: str) -> dict[str, object]:
    """Body of ``erase`` for the application: every entry of it, with what each concealed."""
    _check_not_erased(state, application_id)
    app = applications.application_of(state, application_id)
    body: dict[str, object] = {
        "application": app.id,
        "entries": [e.to_body() for e in openings_of(app)],
        "reason": reason,
    }
    Reader(body, "body").text("reason", max_len=MAX_REASON)
    return body


def _check_not_erased(state: LedgerState, application_id: str) -> None:
    by = applications.book(state).erased.get(application_id)
    if by is not None:
        raise Conflict(
            f"application {application_id} was already erased at entry {by}",
            reason="ALREADY_ERASED",
        )


def _read_entries(r: Reader) -> list[Erased]:
    listed = []
    for item in r.items("entries", nonempty=True):
        item.obj(["index", "kind", "fields"])
        kind = item.choice("kind", sorted(ERASABLE_KINDS))
        names = [n.value for n in item.items("fields", nonempty=True)]
        allowed = restricted(kind)
        if not all(isinstance(n, str) and n in allowed for n in names) or names != sorted(
            set(names)
        ):
            raise item.fail(
                f"must list, sorted and once each, members {kind} conceals: {sorted(allowed)}",
                name="fields",
            )
        listed.append(Erased(item.integer("index"), kind, tuple(names)))
    return listed


def apply_erase(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["application", "entries", "reason"])
    application_id = r.ident("application")
    r.text("reason", max_len=MAX_REASON)
    listed = _read_entries(r)
    _check_not_erased(state, application_id)
    erasures = book(state)
    app = applications.book(state).applications.get(application_id)
    if app is not None:
        _check_live(app, listed)
    else:
        _check_replayed(erasures, application_id, listed, ctx.index)
    applications.book(state).forget(application_id, ctx.index)
    for erased in listed:
        erasures.erased = erasures.erased.set(erased.index, ctx.index)
    return {"application": application_id, "erased": [e.index for e in listed]}


def _check_live(app: applications.Application, listed: list[Erased]) -> None:
    """The application is in the state: it must be rejected and the entries exactly its own."""
    if app.status != ERASABLE_STATUS:
        raise Refused(
            f"application {app.id} is {app.status}; only a rejected application's personal "
            "data can be erased (an approved one is published and backs its voucher)",
            reason="NOT_ERASABLE",
            details={"status": app.status},
        )
    expected = openings_of(app)
    if listed != expected:
        raise InvalidInput(
            f"erase: body.entries must list application {app.id}'s entries and what each "
            f"concealed: {[e.to_body() for e in expected]}",
            reason="ERASURE_MISMATCH",
        )


def _check_replayed(
    erasures: ErasureBook, application_id: str, listed: list[Erased], index: int
) -> None:
    """A replay met the entries blind (their disclosures are gone): they must be exactly
    the ones this entry names, all of the application, with as many members as digests."""
    waiting = {i: w for i, w in erasures.waiting.items() if w.erased_by == index}
    if not waiting:
        raise NotFound(f"no application {application_id!r}", reason="UNKNOWN_APPLICATION")
    named = {e.index: e for e in listed}
    if set(named) != set(waiting) or any(
        w.application != application_id
        or w.kind != named[i].kind
        or w.concealed != len(named[i].fields)
        for i, w in waiting.items()
    ):
        raise LogCorrupt(
            f"erase entry {index} does not name the entries whose disclosures were erased "
            f"for it: {sorted(waiting)}",
            reason="ERASURE_MISMATCH",
        )
    erasures.waiting = Map({i: w for i, w in erasures.waiting.items() if i not in waiting})


def apply_erased(state: LedgerState, entry: Entry, ctx: Context) -> None:
    """An entry whose disclosures an erasure deleted, met again by a replay: only what its
    leaf shows can be checked; it waits for its ``erase`` entry (``entry.erased_by``)."""
    by = entry.erased_by
    if by is None or by <= ctx.index or entry.kind not in ERASABLE_KINDS:
        raise LogCorrupt(
            f"entry {ctx.index} ({entry.kind}) has no disclosures but an erasure marker "
            f"{by}: only an application's entries can be erased, by a later erase entry",
            reason="ERASURE_MISMATCH",
        )
    application_id = body_reader(entry).ident("application")
    waiting = Waiting(application_id, entry.kind, len(digests(entry.body)), by)
    erasures = book(state)
    erasures.waiting = erasures.waiting.set(ctx.index, waiting)


def unresolved(state: LedgerState) -> dict[int, int]:
    """Entries replayed blind whose erase entry has not come (at the end of a log: corrupt)."""
    return {i: w.erased_by for i, w in book(state).waiting.items()}

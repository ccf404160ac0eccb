"""The log's side of c2sp.org/tlog-witness: ask a witness to cosign a checkpoint.

``submit_checkpoint`` is one ``POST <submission prefix>/add-checkpoint``; it returns the
witness's cosignature lines or raises the same refusal classes the witness raised
(``ledger.witness``), so that a 409 carries ``latest_size`` back to the caller.
``request_cosignature`` adds the retry the spec describes: on a 409, prove consistency from
the size the witness reports and ask again.

Lines are returned as the witness sent them, syntax-checked but not verified: the caller
keeps those of witnesses it knows with ``ledger.witness.merge_cosignatures`` (the spec:
"The client MUST ignore any cosignatures from unknown keys").

Pass one ``httpx.Client`` per witness to reuse its connection (the spec: clients SHOULD
use keep-alive); without one, each call opens a connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

import httpx

from ledger.checkpoint import parse_uint64
from ledger.errors import InvalidInput, LedgerError
from ledger.witness import (
    SIZE_CONTENT_TYPE,
    InconsistentCheckpoint,
    LogSignatureRejected,
    MalformedRequest,
    OldSizeConflict,
    UnknownLog,
    format_add_checkpoint,
    parse_cosignature_lines,
)

DEFAULT_TIMEOUT = 10.0  # seconds, for connecting and for the answer


class WitnessUnavailable(LedgerError):
    """The witness did not answer, or answered something the protocol does not define.
    A log keeps serving without this witness's cosignature and tries again later."""

    kind = "internal"
    reason = "WITNESS_UNAVAILABLE"


_REFUSALS: dict[int, type[LedgerError]] = {
    400: MalformedRequest,
    403: LogSignatureRejected,
    404: UnknownLog,
    422: InconsistentCheckpoint,
}


def add_checkpoint_url(prefix: str) -> str:
    """``<submission prefix>/add-checkpoint``, whether or not the prefix ends in '/'."""
    return prefix.rstrip("/") + "/add-checkpoint"


def submit_checkpoint(
    url: str,
    old_size: int,
    proof: Sequence[bytes],
    signed_checkpoint: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    client: httpx.Client | None = None,
) -> list[str]:
    """POST the checkpoint to the witness at submission prefix ``url``; return its
    cosignature lines (each ``— name base64\\n``).

    Raises ``OldSizeConflict`` (409; ``latest_size`` is the witness's size),
    ``InconsistentCheckpoint`` (422), ``LogSignatureRejected`` (403), ``UnknownLog`` (404),
    ``MalformedRequest`` (400) with the witness's message, and ``WitnessUnavailable`` for a
    network failure, a timeout or any other answer.
    """
    body = format_add_checkpoint(old_size, proof, signed_checkpoint)
    endpoint = add_checkpoint_url(url)
    try:
        if client is None:
            response = httpx.post(endpoint, content=body, timeout=timeout)
        else:
            response = client.post(endpoint, content=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise WitnessUnavailable(
            f"witness {endpoint} did not answer: {exc!r}", details={"witness": url}
        ) from exc
    status = response.status_code
    if status == 200:
        try:
            lines = parse_cosignature_lines(response.text)
        except InvalidInput as exc:
            raise WitnessUnavailable(
                f"witness {endpoint} answered 200 without cosignature lines: {exc.message}",
                details={"witness": url},
            ) from exc
        return [line.line() for line in lines]
    if status == 409:
        _conflict(response, endpoint, url, old_size, signed_checkpoint)
    refusal = _REFUSALS.get(status)
    message = response.text.strip()[:500] or f"status {status}"
    if refusal is None:
        raise WitnessUnavailable(
            f"witness {endpoint} answered {status}: {message}",
            details={"witness": url, "status": status},
        )
    raise refusal(f"witness {endpoint} refused: {message}", details={"witness": url})


def _conflict(
    response: httpx.Response, endpoint: str, url: str, old_size: int, signed_checkpoint: str
) -> NoReturn:
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    text = response.text
    try:
        if media_type != SIZE_CONTENT_TYPE or not text.endswith("\n"):
            raise InvalidInput(f"content type {media_type!r}, body {text[:40]!r}")
        latest = parse_uint64(text[:-1], "latest size")
    except InvalidInput as exc:
        raise WitnessUnavailable(
            f"witness {endpoint} answered 409 without a {SIZE_CONTENT_TYPE} size: {exc.message}",
            details={"witness": url},
        ) from exc
    origin = signed_checkpoint.split("\n", 1)[0]
    raise OldSizeConflict(origin, old_size, latest)


def request_cosignature(
    url: str,
    signed_checkpoint: str,
    size: int,
    consistency_proof: Callable[[int], Sequence[bytes]],
    known_size: int = 0,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    client: httpx.Client | None = None,
) -> list[str]:
    """Get a cosignature on the log's checkpoint of ``size`` leaves from the witness at
    ``url``, starting from ``known_size`` (<= ``size``), the size the log last saw this
    witness cosign, 0 if it does not know. ``consistency_proof(old)`` gives the proof from
    ``old`` to ``size`` (empty for 0 and for ``size``: ``ledger.merkle.consistency_proof``).

    Returns the witness's cosignature lines; the caller remembers ``size`` as the next
    ``known_size``. On a 409 it retries once from the size the witness reports, which is
    how a log learns it (the spec: a client MAY start with old size 0 to obtain it). A
    witness reporting a size larger than ``size`` has cosigned a longer tree of this origin
    than the log has: that is not retried; the ``OldSizeConflict`` is for the caller to
    report loudly.
    """
    try:
        lines = submit_checkpoint(
            url,
            known_size,
            consistency_proof(known_size),
            signed_checkpoint,
            timeout=timeout,
            client=client,
        )
    except OldSizeConflict as conflict:
        if conflict.latest_size > size:
            raise
        lines = submit_checkpoint(
            url,
            conflict.latest_size,
            consistency_proof(conflict.latest_size),
            signed_checkpoint,
            timeout=timeout,
            client=client,
        )
    return lines

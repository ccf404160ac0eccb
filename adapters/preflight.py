"""Pre-flight: what the agent checks before it sends anything, each failure with its cause.

1. **Credentials**: the centre directory has its four files, and the client certificate is
   this centre's (its URI SAN ``suanli:centre:<id>`` names ``--centre``) and in date.
2. **The ledger**: reachable at ``--target``, and its certificate verified by ``ca.pem``
   (a refused connection and a failed TLS verification are told apart).
3. **The vouchers**: every voucher the mapping names exists in the ledger and accepts this
   centre (``VerifyVoucher``). A voucher that exists but is not usable now (expired, its
   usage window over) is only a warning: its records are refused with the ledger's reason.

``run_preflight`` returns every check; the command prints the failures and exits non-zero.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

from adapters.client import RedemptionClient, RedemptionError
from adapters.credentials import CentreFiles
from adapters.errors import AgentError
from ledger.providers import accepts

CENTRE_URI_PREFIX = "suanli:centre:"
log = logging.getLogger("suanli.agent")


@dataclass(frozen=True)
class Check:
    """One pre-flight check: what, whether it passed, and the cause when it did not.

    level: ``ok``, ``warning`` (printed, does not stop the run), ``error`` (stops it) or
    ``unreachable`` (stops it; the ledger may come back: run again)."""

    what: str
    level: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.level in ("error", "unreachable")

    def line(self) -> str:
        return f"{self.level}: {self.what}: {self.detail}"


def certificate_centre(pem: bytes) -> tuple[str | None, datetime]:
    """(the centre a client certificate names in its URI SAN, or None; its expiry)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    centres = [u.removeprefix(CENTRE_URI_PREFIX) for u in uris if u.startswith(CENTRE_URI_PREFIX)]
    return (centres[0] if len(centres) == 1 else None), cert.not_valid_after_utc


def check_certificate(files: CentreFiles, centre: str) -> Check:
    what = f"client certificate {files.cert}"
    try:
        named, expires = certificate_centre(files.cert.read_bytes())
    except (OSError, ValueError) as exc:
        return Check(what, "error", f"cannot be read: {exc}")
    if named is None:
        return Check(what, "error", f"has no URI SAN {CENTRE_URI_PREFIX}<centre>")
    if named != centre:
        return Check(
            what,
            "error",
            f"is centre {named}'s ({CENTRE_URI_PREFIX}{named}), not --centre {centre}'s:"
            f" use {centre}'s credentials (--centre-dir) or --centre {named}",
        )
    if expires <= datetime.now(UTC):
        return Check(what, "error", f"expired at {expires.isoformat()}")
    return Check(what, "ok", f"centre {centre}, valid until {expires.date().isoformat()}")


def connection_cause(error: RedemptionError, target: str) -> Check:
    """A failed first call, told apart: refused, TLS verification, other."""
    text = error.message
    lowered = text.lower()
    what = f"ledger at {target}"
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return Check(
            what,
            "error",
            "TLS verify failure: ca.pem does not verify the server's certificate"
            f" (check ca.pem and --server-name): {text}",
        )
    if "handshake" in lowered or "ssl" in lowered or "tls" in lowered:
        return Check(what, "error", f"TLS handshake failed: {text}")
    if error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        cause = "connection refused" if "refused" in lowered else "unreachable"
        return Check(what, "unreachable", f"{cause}: {text}")
    return Check(what, "error", f"refused the call: {error.reason}: {text}")


def check_voucher(client: RedemptionClient, voucher: str, centre: str, named_by: str) -> Check:
    what = f"voucher {voucher} ({named_by})"
    try:
        found = client.verify_voucher(voucher)
    except RedemptionError as error:
        if error.reason == "UNKNOWN_VOUCHER" or error.code == grpc.StatusCode.NOT_FOUND:
            return Check(what, "error", f"the ledger has no such voucher: {error.message}")
        return Check(what, "error", f"the ledger refused: {error.reason}: {error.message}")
    if found.accepted_centres and not accepts(found.accepted_centres, centre):
        accepted = ", ".join(found.accepted_centres)
        return Check(what, "error", f"is not accepted at {centre} (only at {accepted})")
    if not found.usable:
        return Check(what, "warning", f"not usable now: {found.reason} (status {found.status})")
    return Check(what, "ok", f"{found.status}, usage {found.usage_start}..{found.usage_end}")


def run_preflight(
    files: CentreFiles,
    centre: str,
    vouchers: Iterable[tuple[str, str]],
    connect: Callable[[], RedemptionClient],
    patience: float = 0.0,
) -> list[Check]:
    """Every check, in order; stops at the first failure that makes the rest meaningless.
    ``vouchers``: (voucher, what names it in the mapping). A ledger that cannot be reached
    (not a TLS failure: that is final) is asked again for up to ``patience`` seconds, as a
    ledger being restarted comes back."""
    try:
        files.check()
    except AgentError as exc:
        return [Check(f"centre directory {files.directory}", "error", str(exc))]
    checks = [check_certificate(files, centre)]
    if checks[-1].failed:
        return checks
    wanted = list(vouchers)
    client = connect()
    try:
        probe = wanted[0][0] if wanted else "V-preflight-probe"
        failed = _reach(client, probe, time.monotonic() + patience)
        if failed is not None:
            checks.append(failed)
            return checks
        checks.append(Check(f"ledger at {client_target(client)}", "ok", "reachable, TLS verified"))
        checks.extend(check_voucher(client, v, centre, named_by) for v, named_by in wanted)
    finally:
        client.close()
    return checks


def _reach(client: RedemptionClient, probe: str, deadline: float) -> Check | None:
    """None once the ledger answers a first call (any answer but a failure to connect); the
    failed check when it does not before ``deadline`` or the failure is not transient."""
    wait = 0.5
    while True:
        try:
            client.verify_voucher(probe)
            return None
        except RedemptionError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                return None  # the ledger answered: the voucher check names it
            failed = connection_cause(error, client_target(client))
        left = deadline - time.monotonic()
        if failed.level != "unreachable" or left <= 0:
            return failed
        log.warning("%s; asking again for up to %.0f s", failed.line(), left)
        time.sleep(min(wait, left))
        wait = min(wait * 2, 5.0)


def client_target(client: RedemptionClient) -> str:
    return client.target

"""A development PKI for the gRPC interface: one CA, a server certificate, a client
certificate per centre. Created by ``suanli init`` and on the first ``suanli serve``.

Layout (private keys are PKCS#8 PEM, mode 0600)::

    <data_dir>/tls/ca.pem, ca.key            the development CA
    <data_dir>/tls/server.pem, server.key    the server: DNS localhost, IP 127.0.0.1 and ::1
    <data_dir>/centres/<id>/client.pem, client.key, ca.pem
                                             what a centre's agent needs to connect

A centre's identity is the URI subject alternative name ``suanli:centre:<id>`` of its client
certificate (the subject CN repeats the id for people; the server ignores it). A production
deployment replaces these files with certificates from its own CA, keeping that URI SAN.

Creating is idempotent: a file that exists and is still good (signed by the current CA, not
expiring within 30 days, naming the right identity) is kept; anything else is (re)made. A
lock file serialises two processes starting on the same data directory.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.credentials import CentreFiles
from api.keystore import CENTRES

CENTRE_URI_PREFIX = "suanli:centre:"
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of one party's TLS material: the CA to trust, its certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def tls_dir(data_dir: Path) -> Path:
    return data_dir / "tls"


def server_files(data_dir: Path) -> TlsFiles:
    d = tls_dir(data_dir)
    return TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key")


def centre_files(data_dir: Path, centre: str) -> TlsFiles:
    """A centre's TLS files where its agent looks for them (``adapters.credentials``)."""
    files = CentreFiles.in_data_dir(data_dir, centre)
    return TlsFiles(files.ca, files.cert, files.key)


def centre_uri(centre: str) -> str:
    return CENTRE_URI_PREFIX + centre


# --- files -------------------------------------------------------------------------------


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` atomically (temp file + rename); private files are 0600 from birth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


@contextmanager
def _lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- certificates ------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _builder(
    subject: x509.Name, issuer: x509.Name, public: object, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA); a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca(files: TlsFiles) -> None:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "suanli development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "suanli development CA"),
        ]
    )
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(files.key, _key_pem(key), private=True)
    _write(files.ca, cert.public_bytes(serialization.Encoding.PEM), private=False)


def _make_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    sans: Iterable[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    files: TlsFiles,
) -> None:
    key = _new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "suanli development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.key, _key_pem(key), private=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)


def _good(files: TlsFiles, ca_cert: x509.Certificate, sans: list[x509.GeneralName]) -> bool:
    """Is the leaf at ``files`` present, signed by ``ca_cert``, current, for these names?"""
    cert = _load_cert(files.cert)
    if cert is None or not files.key.exists():
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    try:
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(have) == set(sans)


@dataclass(frozen=True)
class DevPki:
    server: TlsFiles
    centres: dict[str, TlsFiles]
    created: tuple[str, ...]  # what this call made (empty when everything already existed)


def ensure_dev_pki(
    data_dir: Path, centres: Iterable[str] | None = None, *, extra: Iterable[str] = ()
) -> DevPki:
    """Create whatever is missing or stale of the development CA and certificates: for
    ``centres`` (default: the two centres and every centre added since, whose directory
    holds a client certificate) and ``extra``."""
    if centres is None:
        added = {p.parent.name for p in (data_dir / "centres").glob("*/client.pem")}
        centres = {*CENTRES, *added}
    centres = {*centres, *extra}
    ca_files = TlsFiles(
        tls_dir(data_dir) / "ca.pem", tls_dir(data_dir) / "ca.pem", tls_dir(data_dir) / "ca.key"
    )
    server = server_files(data_dir)
    wanted = {c: centre_files(data_dir, c) for c in centres}
    created: list[str] = []
    with _lock(tls_dir(data_dir)):
        ca_cert = _load_cert(ca_files.ca)
        if (
            ca_cert is None
            or not ca_files.key.exists()
            or ca_cert.not_valid_after_utc - RENEW_BEFORE < _now()
        ):
            _make_ca(ca_files)
            created.append("ca")
            ca_cert = _load_cert(ca_files.ca)
            assert ca_cert is not None
        ca_key = _load_key(ca_files.key)
        ca_pem = ca_files.ca.read_bytes()

        server_sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        server_sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        if not _good(server, ca_cert, server_sans):
            _make_leaf(
                ca_cert, ca_key, "localhost", server_sans, ExtendedKeyUsageOID.SERVER_AUTH, server
            )
            created.append("server")

        for centre, files in sorted(wanted.items()):
            sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(centre_uri(centre))]
            if not _good(files, ca_cert, sans):
                _make_leaf(ca_cert, ca_key, centre, sans, ExtendedKeyUsageOID.CLIENT_AUTH, files)
                created.append(f"centre {centre}")
            if not files.ca.exists() or files.ca.read_bytes() != ca_pem:
                _write(files.ca, ca_pem, private=False)
    return DevPki(server, wanted, tuple(created))

"""A development certificate authority and the broker's server certificate.

`ensure_certificates(directory)` leaves four files there: `ca.crt` (what clients trust),
`ca.key`, `server.crt` and `server.key` (what the broker and the WebSocket bridge
present), the keys 0600 in a 0700 directory. It reuses what is there while it is valid
for at least `RENEW_BEFORE` more and names every host name asked for; otherwise it
issues a new server certificate (and a new CA when the CA is missing, unreadable or
about to expire). Keys are ECDSA P-256: instant to generate, and every TLS stack a
device is likely to run (OpenSSL, mbedTLS on the ESP32, BearSSL) verifies them.

Production names its own certificates (README, Deployment); `python -m devstack certs`
writes this layout for a private CA of your own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.private_dir import make_private_dir

CA_VALIDITY = dt.timedelta(days=5 * 365)
# Within the 398 days browsers accept for a server certificate.
SERVER_VALIDITY = dt.timedelta(days=397)
# A certificate this close to its end is replaced before anyone sees it expire.
RENEW_BEFORE = dt.timedelta(days=30)
# Backdated a little, so a client whose clock runs slow accepts a fresh certificate.
CLOCK_SKEW = dt.timedelta(minutes=5)
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
# Keys are their owner's only; certificates are public (they are inside .data/'s 0700).
KEY_MODE, CERT_MODE = 0o600, 0o644

type Name = str


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where one directory's CA and server certificate live."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"


def default_names() -> tuple[Name, ...]:
    """The names a development broker answers to: loopback and this machine's host name."""
    host = socket.gethostname()
    return (*LOCAL_NAMES, host) if host and host not in LOCAL_NAMES else LOCAL_NAMES


def ensure_certificates(
    directory: Path, names: tuple[Name, ...] | None = None, *, now: dt.datetime | None = None
) -> CertificateFiles:
    """The CA and a server certificate for `names` (default: `default_names()`) in
    `directory`, reused while valid, (re)issued otherwise."""
    files = CertificateFiles(make_private_dir(directory))
    wanted = names if names is not None else default_names()
    moment = now or dt.datetime.now(dt.UTC)
    ca = _usable(files.ca_cert, files.ca_key, moment)
    if ca is None:
        ca = _issue_ca(moment)
        _write(files.ca_key, _key_pem(ca[1]), KEY_MODE)
        _write(files.ca_cert, ca[0].public_bytes(serialization.Encoding.PEM), CERT_MODE)
    server = _usable(files.server_cert, files.server_key, moment)
    if server is None or not _fits(server[0], ca[0], wanted):
        cert, key = _issue_server(ca, wanted, moment)
        _write(files.server_key, _key_pem(key), KEY_MODE)
        _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    return files


def subject_alternative_names(cert: x509.Certificate) -> set[Name]:
    """The DNS names and IP addresses a certificate is valid for, as text."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)) | ips


type Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _usable(cert_path: Path, key_path: Path, now: dt.datetime) -> Pair | None:
    """The certificate and its key when both load, match and stay valid long enough."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key().public_numbers() != _public_numbers(cert):
        return None
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc - RENEW_BEFORE:
        return None
    return cert, key


def _public_numbers(cert: x509.Certificate) -> ec.EllipticCurvePublicNumbers | None:
    public = cert.public_key()
    return public.public_numbers() if isinstance(public, ec.EllipticCurvePublicKey) else None


def _fits(server: x509.Certificate, ca: x509.Certificate, names: tuple[Name, ...]) -> bool:
    """Whether `server` was signed by this CA and names every host name wanted."""
    try:
        server.verify_directly_issued_by(ca)
        return set(names) <= subject_alternative_names(server)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False


def _issue_ca(now: dt.datetime) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotplatform development"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"iotplatform development CA {now:%Y-%m-%d}"),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        _builder(name, name, key.public_key(), now, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_server(ca: Pair, names: tuple[Name, ...], now: dt.datetime) -> Pair:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    # Never past the CA's own end: a chain is only as valid as its shortest link.
    validity = min(SERVER_VALIDITY, ca_cert.not_valid_after_utc - now)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    validity: dt.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _general_names(names: tuple[Name, ...]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` at once (a reader never sees half a file), with `mode`
    from its first byte (a key is never readable to others, not even while written)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    partial.chmod(mode)
    partial.replace(path)

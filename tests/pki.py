"""Certificates for the TLS tests, made with `cryptography`: a self-signed one, or a CA and the
server certificates it signs (as cert-manager's CA issuer makes them)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.queue.harness import QueueHarness

LOOPBACK_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class Authority:
    """A CA: its key and its self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def pem(self) -> str:
        return pem_of(self.certificate)


def _subject_names(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def certificate(key: ec.EllipticCurvePrivateKey, common_name: str, names: tuple[str, ...],
                issuer: Authority | None = None, is_ca: bool = False) -> x509.Certificate:
    """A certificate for `key` naming `names`, signed by `issuer` (itself when None)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(_subject_names(names), critical=False)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def new_authority(common_name: str = "stablenew-ca") -> Authority:
    """A CA that signs certificates and is not itself valid for any server name."""
    key = new_key()
    return Authority(key, certificate(key, common_name, (), is_ca=True))


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def write_server_files(directory: Path, issuer: Authority | None,
                       names: tuple[str, ...] = LOOPBACK_NAMES) -> tuple[Path, Path]:
    """(certificate, key) files of a server certificate for `names`, signed by `issuer`
    (self-signed, and then its own root, when None)."""
    key = new_key()
    cert = certificate(key, names[0], names, issuer, is_ca=issuer is None)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_text(pem_of(cert), encoding="utf-8")
    key_path.write_text(key_pem(key), encoding="utf-8")
    return cert_path, key_path


def write_authority(directory: Path, authority: Authority) -> Path:
    """The CA's certificate as a PEM file (what a client trusts)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ca.crt"
    path.write_text(authority.pem(), encoding="utf-8")
    return path


@contextmanager
def ca_signed_queue(directory: Path) -> Iterator[tuple[QueueHarness, Path]]:
    """A real queue serving a certificate a new CA signed (for localhost and 127.0.0.1), and
    the CA's certificate file, for the `with` block."""
    authority = new_authority()
    certificate, key = write_server_files(directory / "tls", authority)
    queue = QueueHarness(directory / "queue", {"STABLENEW_TLS_CERT": str(certificate),
                                               "STABLENEW_TLS_KEY": str(key)})
    with queue.running():
        yield queue, write_authority(directory / "tls", authority)

"""A throwaway sandbox PKI (``gateway pki init``) and extra certificates for tests.

Never for production: the CA key lies next to the certificates. Every leaf certificate carries
SAN IP 127.0.0.1 and DNS localhost and both serverAuth and clientAuth, so one certificate serves
a partner's (or the gateway's) server and client side in mutual TLS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["NAMES", "init", "issue", "make_ca", "subject"]

NAMES = ("gateway", "ind", "duo", "cjib")
ORG = "Sandbox civic-integration chain"
CA_NAME = "Sandbox chain CA"

_Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey  # what this module generates and signs with


def subject(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def init(directory: Path, *, days: int = 365, force: bool = False, not_before: dt.datetime | None = None,
         not_after: dt.datetime | None = None) -> dict[str, Path]:
    """Write ca.pem/ca-key.pem and <name>.pem/<name>-key.pem for gateway, ind, duo, cjib.

    Returns file stem -> path (``"ca"``, ``"ca-key"``, ``"ind"``, ``"ind-key"``, ...). Existing
    files are kept unless ``force``. Every certificate is valid from five minutes ago for ``days``
    days, unless ``not_before``/``not_after`` say otherwise (tests that run on fixed clocks give a
    fixed validity, so no test depends on today's date).
    """
    directory = Path(directory)
    paths = {stem: directory / f"{stem}.pem" for n in ("ca", *NAMES) for stem in (n, f"{n}-key")}
    if not force and all(p.exists() for p in paths.values()):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    make_ca(directory, "ca", days=days, not_before=not_before, not_after=not_after)
    for name in NAMES:
        issue(directory, name, days=days, not_before=not_before, not_after=not_after)
    return paths


def make_ca(directory: Path, stem: str, *, common_name: str = CA_NAME, days: int = 365,
            not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> tuple[Path, Path]:
    """A self-signed CA as ``<stem>.pem`` + ``<stem>-key.pem``; returns (key_path, cert_path).

    Valid from five minutes ago for ``days`` days, unless ``not_before``/``not_after`` say
    otherwise. Tests make a second CA with the same subject name to play an impostor.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _now()
    start = not_before or now - dt.timedelta(minutes=5)
    end = not_after or (not_before or now) + dt.timedelta(days=days)
    name = subject(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(Path(directory), stem, key, cert)


def issue(
    directory: Path,
    name: str,
    *,
    ca: tuple[Path, Path] | None = None,
    common_name: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = 365,
    key_type: str = "rsa",
) -> tuple[Path, Path]:
    """Issue ``<name>.pem`` + ``<name>-key.pem`` in ``directory``; returns (key_path, cert_path).

    ``ca`` is (ca_key_path, ca_cert_path), by default the directory's ca-key.pem/ca.pem.
    ``common_name`` defaults to ``name``; tests give an impostor or a rollover certificate the
    subject of the real one. ``key_type`` is "rsa" (2048) or "ec" (P-256).
    """
    directory = Path(directory)
    ca_key_path, ca_cert_path = ca or (directory / "ca-key.pem", directory / "ca.pem")
    ca_key = _ca_key(Path(ca_key_path))
    ca_cert = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(65537, 2048)
    start = not_before or _now() - dt.timedelta(minutes=5)
    end = not_after or start + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject(common_name or name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(key_type), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(_ca_public_key(ca_cert)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _write(directory, name, key, cert)


def _ca_key(path: Path) -> _Key:
    # Only RSA and EC keys sign a certificate with SHA-256 as issue() does (make_ca writes RSA).
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: the CA key is neither RSA nor EC")
    return key


def _ca_public_key(ca_cert: x509.Certificate) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    # The certificate's key type, as _ca_key requires of the private key.
    key = ca_cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("the CA certificate's key is neither RSA nor EC")
    return key


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def _leaf_key_usage(key_type: str) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=key_type == "rsa",
                         data_encipherment=False, key_agreement=key_type == "ec", key_cert_sign=False,
                         crl_sign=False, encipher_only=False, decipher_only=False)


def _write(directory: Path, stem: str, key: _Key, cert: x509.Certificate) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / f"{stem}-key.pem", directory / f"{stem}.pem"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # Create the key file with mode 0600 from the start, so it is never readable by others.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)

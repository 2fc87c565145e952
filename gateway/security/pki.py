"""A throwaway sandbox PKI (``gateway pki init``) and extra certificates for tests.

Never for production: the CA keys lie next to the certificates. Every leaf certificate carries
SAN IP 127.0.0.1 and DNS localhost and both serverAuth and clientAuth, so one certificate serves
a partner's (or the gateway's) server and client side in mutual TLS.

The hierarchy has the shape of PKIoverheid's (Digikoppeling WT001-WT003, contracts revision 2):
a root (``root.pem``) -> an intermediate (``ca-key.pem``, the CA that issues) -> the leaves, whose
subject ``serialNumber`` is the organisation's OIN (``OINS``). ``ca.pem`` holds the intermediate
followed by the root, so a partner's ``trust_anchor_files = ["pki/ca.pem"]`` carries the whole chain.
With ``ca_url`` (the sandbox CA on loopback, ``gateway.security.sandbox_ca``) every leaf names
its CRL distribution point ``<ca_url>/crl/ca.crl`` and its OCSP responder ``<ca_url>/ocsp``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = ["NAMES", "OINS", "init", "issue", "make_ca", "subject", "ca_key", "crl_url", "ocsp_url"]

NAMES = ("gateway", "ind", "duo", "cjib")
ORG = "Sandbox civic-integration chain"
CA_NAME = "Sandbox chain CA"
ROOT_NAME = "Sandbox Staat der Nederlanden Private Root CA"
#: The sandbox organisations' OINs (20 digits; made up, in the shape of real ones).
OINS = {"gateway": "00000009990000000001", "ind": "00000009990000000002", "duo": "00000009990000000003",
        "cjib": "00000009990000000004"}

_Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey  # what this module generates and signs with


def subject(common_name: str, oin: str | None = None) -> x509.Name:
    """The sandbox's subject name; ``oin`` goes into serialNumber, as PKIoverheid puts it."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)]
    if oin:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, oin))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def crl_url(ca_url: str) -> str:
    return ca_url.rstrip("/") + "/crl/ca.crl"


def ocsp_url(ca_url: str) -> str:
    return ca_url.rstrip("/") + "/ocsp"


def init(directory: Path, *, days: int = 365, force: bool = False, not_before: dt.datetime | None = None,
         not_after: dt.datetime | None = None, ca_url: str | None = None) -> dict[str, Path]:
    """Write root.pem, ca.pem/ca-key.pem and <name>.pem/<name>-key.pem for gateway, ind, duo, cjib.

    Returns file stem -> path (``"root"``, ``"ca"``, ``"ca-key"``, ``"ind"``, ``"ind-key"``, ...).
    Existing files are kept unless ``force``. Every certificate is valid from five minutes ago for
    ``days`` days, unless ``not_before``/``not_after`` say otherwise (tests that run on fixed
    clocks give a fixed validity, so no test depends on today's date). ``ca_url``: the leaves
    name the sandbox CA's CRL and OCSP endpoints there.
    """
    directory = Path(directory)
    stems = ("ca", *NAMES)
    paths = {stem: directory / f"{stem}.pem" for n in stems for stem in (n, f"{n}-key")}
    paths.update({"root": directory / "root.pem", "root-key": directory / "root-key.pem"})
    if not force and all(p.exists() for p in paths.values()):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    valid = {"days": days, "not_before": not_before, "not_after": not_after}
    root = make_ca(directory, "root", common_name=ROOT_NAME, path_length=1, **valid)  # type: ignore[arg-type]
    make_ca(directory, "ca", issuer=root, **valid)  # type: ignore[arg-type]
    for name in NAMES:
        issue(directory, name, ca_url=ca_url, **valid)  # type: ignore[arg-type]
    (directory / "ca-url.txt").write_text(ca_url or "")
    return paths


def make_ca(directory: Path, stem: str, *, common_name: str = CA_NAME, days: int = 365,
            not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
            issuer: tuple[Path, Path] | None = None, path_length: int = 0) -> tuple[Path, Path]:
    """A CA as ``<stem>.pem`` + ``<stem>-key.pem``; returns (key_path, cert_path).

    Self-signed, or with ``issuer`` (key_path, cert_path) an intermediate whose ``<stem>.pem``
    holds it followed by the issuer's certificate (the chain a trust-anchor file carries).
    Valid from five minutes ago for ``days`` days, unless ``not_before``/``not_after`` say
    otherwise. Tests make a second CA with the same subject name to play an impostor.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _now()
    start = not_before or now - dt.timedelta(minutes=5)
    end = not_after or (not_before or now) + dt.timedelta(days=days)
    name = subject(common_name)
    signer: _Key = key
    issuer_name, chain = name, b""
    if issuer is not None:
        signer = ca_key(Path(issuer[0]))
        issuer_cert = x509.load_pem_x509_certificate(Path(issuer[1]).read_bytes())
        issuer_name, chain = issuer_cert.subject, issuer_cert.public_bytes(serialization.Encoding.PEM)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )
    written = _write(Path(directory), stem, key, cert)
    if chain:
        with written[1].open("ab") as f:
            f.write(chain)
    return written


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
    oin: str | None = None,
    ca_url: str | None = None,
) -> tuple[Path, Path]:
    """Issue ``<name>.pem`` + ``<name>-key.pem`` in ``directory``; returns (key_path, cert_path).

    ``ca`` is (ca_key_path, ca_cert_path), by default the directory's ca-key.pem/ca.pem.
    ``common_name`` defaults to ``name``; tests give an impostor or a rollover certificate the
    subject of the real one. ``key_type`` is "rsa" (2048) or "ec" (P-256). ``oin`` (subject
    serialNumber) defaults to the sandbox OIN of the common name; ``ca_url`` names the sandbox
    CA's CRL and OCSP endpoints (by default the ones ``init`` recorded in ca-url.txt, if any).
    """
    directory = Path(directory)
    ca_key_path, ca_cert_path = ca or (directory / "ca-key.pem", directory / "ca.pem")
    issuer_key = ca_key(Path(ca_key_path))
    ca_cert = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(65537, 2048)
    start = not_before or _now() - dt.timedelta(minutes=5)
    end = not_after or start + dt.timedelta(days=days)
    oin = oin if oin is not None else OINS.get(common_name or name)
    if ca_url is None and ca is None and (directory / "ca-url.txt").exists():
        ca_url = (directory / "ca-url.txt").read_text().strip() or None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject(common_name or name, oin))
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
    )
    if ca_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url(ca_url))], relative_name=None, reasons=None,
            crl_issuer=None)]), critical=False)
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url(ca_url)))]), critical=False)
    return _write(directory, name, key, builder.sign(issuer_key, hashes.SHA256()))


def ca_key(path: Path) -> _Key:
    """The CA's private key (``ca-key.pem``), for issuing certificates, CRLs and OCSP answers."""
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
    write_private_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def write_private_key(path: Path, key: _Key) -> None:
    """PEM (PKCS#8, unencrypted) in a file created with mode 0600, so it is never readable by others."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)

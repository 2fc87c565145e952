"""The gateway's own next key: a new private key and a certificate request with the subject (and
names) of the current certificate, for ``gateway pki rotate``. The request goes to the CA (for
PKIoverheid: the TSP); in the sandbox the sandbox CA signs it at once (``sign_request``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.security import pki

__all__ = ["prepare", "sign_request"]


def prepare(current_cert: Path, directory: Path, stem: str = "gateway-next") -> tuple[Path, Path]:
    """Write ``<stem>-key.pem`` (mode 0600) and ``<stem>.csr`` for the subject of ``current_cert``."""
    cert = x509.load_pem_x509_certificate(current_cert.read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = x509.CertificateSigningRequestBuilder().subject_name(cert.subject)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    csr = builder.sign(key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    key_path, csr_path = directory / f"{stem}-key.pem", directory / f"{stem}.csr"
    pki.write_private_key(key_path, key)
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def sign_request(csr_path: Path, ca_cert: Path, ca_key: Path, out: Path, *, not_before: dt.datetime,
                 days: int = 365) -> Path:
    """Issue the certificate for a request with a (sandbox) CA; valid from ``not_before``."""
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    if not csr.is_signature_valid:
        raise ValueError(f"{csr_path}: the request's signature does not verify")
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
               .public_key(csr.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_before + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    for ext in csr.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    cert = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out

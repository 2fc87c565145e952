"""A sandbox PKI for tests: import ``make_pki`` from tests/conftest.py into a session fixture.

    @pytest.fixture(scope="session")
    def pki_paths(tmp_path_factory):
        return make_pki(tmp_path_factory)

``make_pki`` returns the paths from ``gateway.security.pki.init`` (keys "ca", "ca-key", "ind",
"ind-key", ... for gateway, ind, duo, cjib), the directory under "dir", and extra certificates
as (key_path, cert_path) pairs. The CAs and the ordinary certificates are valid from VALID_FROM
(2020-01-01) to VALID_UNTIL (2040-01-01), well before the earliest fixed clock in the suite
(2026-10-01, tests/integration/test_ruleops.py) and long after today, so no test that runs on a
fixed clock depends on the day the suite runs (scripts/test runs the end-to-end layer a year
ahead, under libfaketime, to keep it that way). Only "ind-expired" and "ind-future" are relative
to the (real) time the PKI is made: they exist to be invalid *now*.

- "other-ca": a second CA with the same subject name as "ca" (an impostor CA);
- "ind-other-ca": a certificate with ind's subject issued by that impostor CA;
- "ind-expired": ind's subject, valid until a day ago;
- "ind-future": ind's subject, valid from tomorrow;
- "ind-rollover": a second, valid certificate for ind (key rollover);
- "cjib-ec": an EC P-256 certificate for cjib (ES256 / ecdsa-sha256).

and "issue": ``gateway.security.pki.issue`` bound to that directory, for anything else.
The PKI is made once per test session (RSA key generation takes tens of milliseconds per key).
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any, TypedDict

from gateway.security import pki
from tests.paths import SAMPLES  # re-exported for the security tests

__all__ = ["SAMPLES", "ind_envelope", "ind_payload", "keypair", "make_pki", "signed_request", "trust"]

# The validity of the test PKI: fixed, not relative to today (see the module docstring).
VALID_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
VALID_UNTIL = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)

_made: dict[str, Any] | None = None


class _Validity(TypedDict):
    """The ``not_before``/``not_after`` keywords of ``pki.init``, ``make_ca`` and ``issue``."""

    not_before: dt.datetime
    not_after: dt.datetime


def make_pki(tmp_path_factory: Any) -> dict[str, Any]:
    global _made
    if _made is None:
        _made = _build(Path(tmp_path_factory.mktemp("pki")))
    return _made


def _build(directory: Path) -> dict[str, Any]:
    valid = _Validity(not_before=VALID_FROM, not_after=VALID_UNTIL)
    paths: dict[str, Any] = dict(pki.init(directory, **valid))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    day = dt.timedelta(days=1)
    other_ca = pki.make_ca(directory, "other-ca", **valid)  # same subject name as the real CA
    paths.update({
        "dir": directory,
        "other-ca": other_ca,
        "ind-other-ca": pki.issue(directory, "ind-other-ca", ca=other_ca, common_name="ind", **valid),
        "ind-expired": pki.issue(directory, "ind-expired", common_name="ind",
                                 not_before=now - 30 * day, not_after=now - day),
        "ind-future": pki.issue(directory, "ind-future", common_name="ind",
                                not_before=now + day, not_after=now + 30 * day),
        "ind-rollover": pki.issue(directory, "ind-rollover", common_name="ind", **valid),
        "cjib-ec": pki.issue(directory, "cjib-ec", common_name="cjib", key_type="ec", **valid),
        "issue": functools.partial(pki.issue, directory),
    })
    return paths


# ------------------------------------------------------------------ helpers for the security tests

def keypair(paths: dict[str, Any], name: str):
    """The KeyPair for a name from ``pki.init`` ("ind") or an extra pair ("ind-expired")."""
    from gateway.security.keys import load_keypair

    if isinstance(paths.get(name), tuple):
        key_path, cert_path = paths[name]
    else:
        key_path, cert_path = paths[f"{name}-key"], paths[name]
    return load_keypair(key_path, cert_path)


def trust(paths: dict[str, Any], partner: str, *certs: str, anchors: tuple[str, ...] = ("ca",)):
    """A PartnerTrust pinning the named certificates (default: the partner's own)."""
    from gateway.security.keys import load_trust

    def cert_path(name: str) -> Path:
        value = paths[name]
        return value[1] if isinstance(value, tuple) else value

    return load_trust(partner, [cert_path(a) for a in anchors], [cert_path(c) for c in certs or (partner,)])


IND_ACTION = "urn:nl:ind:gegevenslevering:inburgering:v1/OntvangMelding"
IND_MESSAGE_ID = "urn:uuid:6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"


def ind_payload():
    """A fresh copy of the sample ind:VergunningMelding element."""
    from gateway.wire import soap, xmlsafe

    root = xmlsafe.parse((SAMPLES / "ind-ontvangmelding-request.xml").read_bytes())
    return root.find(f"{{{soap.SOAP_NS}}}Body")[0]


def ind_envelope(relates_to: str | None = None):
    """The unsigned OntvangMelding envelope, as gateway.wire.soap.build_envelope makes it."""
    from gateway.wire import soap

    return soap.build_envelope(ind_payload(), to="https://127.0.0.1/ind/meldingen", action=IND_ACTION,
                               message_id=IND_MESSAGE_ID, relates_to=relates_to)


def signed_request(key, now, parts=None, **kw) -> bytes:
    from gateway.security import wsse

    return wsse.sign_envelope(ind_envelope(), key, parts=parts or wsse.REQUEST_PARTS, now=now, **kw)


WSS4J_PREFIX_LISTS = {"SignedInfo": "soap wsa wsse wsu", "#id-body": "wsa wsse wsu",
                      "#id-timestamp": "wsse soap wsa", "#id-to": "soap wsse", "#id-action": "soap wsa wsse"}


def with_prefix_lists(data: bytes, key, lists: dict[str, str] | None = None) -> bytes:
    """Re-sign a signed message with ec:InclusiveNamespaces PrefixLists, as Java stacks send them.

    ``lists`` maps "SignedInfo" (its CanonicalizationMethod) and Reference URIs ("#id-body", or ""
    for an enveloped signature) to a PrefixList; the default is ``WSS4J_PREFIX_LISTS``. Each digest
    is recomputed over the element in place canonicalized with its list, then the signature over
    SignedInfo in place, with lxml and cryptography only (not signxml, which canonicalizes
    SignedInfo before placing it, where in-scope prefixes differ).
    """
    import base64
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from lxml import etree

    from gateway.security.c14n import EC_NS
    from gateway.wire import soap, xmlsafe
    from gateway.wire.xmlsafe import exc_c14n as canonical

    lists = WSS4J_PREFIX_LISTS if lists is None else lists
    ds = soap.DS_NS
    root = xmlsafe.parse(data)
    signature = next(root.iter(f"{{{ds}}}Signature"))
    info = signature.find(f"{{{ds}}}SignedInfo")

    def add_list(method, value: str | None):
        if value is not None:
            etree.SubElement(method, f"{{{EC_NS}}}InclusiveNamespaces", nsmap={"ec": EC_NS}, PrefixList=value)
        return value.split(" ") if value else None

    for reference in info.iter(f"{{{ds}}}Reference"):
        uri = reference.get("URI")
        prefixes = add_list(reference.findall(f"{{{ds}}}Transforms/{{{ds}}}Transform")[-1], lists.get(uri))
        if uri:
            target = root.xpath("//*[@*[local-name()='Id'] = $id]", id=uri[1:])[0]
            digest_input = canonical(target, prefixes)
        else:  # enveloped: the document without the signature
            bare = etree.fromstring(etree.tostring(root))
            bare.remove(bare.find(f"{{{ds}}}Signature"))
            digest_input = canonical(bare, prefixes)
        reference.find(f"{{{ds}}}DigestValue").text = base64.b64encode(hashlib.sha256(digest_input).digest()).decode()
    signed_info = canonical(info, add_list(info.find(f"{{{ds}}}CanonicalizationMethod"), lists.get("SignedInfo")))
    private = key.private_key
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(signed_info, ec.ECDSA(hashes.SHA256())))
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raw = private.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
    signature.find(f"{{{ds}}}SignatureValue").text = base64.b64encode(raw).decode()
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def ack_body(data: bytes) -> bytes:
    """The exclusive canonical form of an ind-wus answer's Body payload.

    Contracts revision 2: a repeated push gets the first answer's Body signed afresh (new
    Timestamp, MessageID, RelatesTo and SignatureConfirmation), so repeats compare by this.
    """
    from gateway.wire import soap, xmlsafe

    return xmlsafe.exc_c14n(soap.split(xmlsafe.parse(data)).payload)

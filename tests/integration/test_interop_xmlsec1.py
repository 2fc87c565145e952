"""Interoperability: xmlsec1 (libxmlsec1) for ind-wus and duo-xml, jwcrypto for cjib-rest.

Another WS-Security stack's output must pass our checks, and ours must pass theirs.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import subprocess

import pytest
from lxml import etree

from gateway.core.errors import SignatureInvalid
from gateway.security import jws, wsse, xmldsig
from gateway.wire import soap, xmlsafe
from tests.pki_fixtures import SAMPLES, ind_envelope, keypair, make_pki, signed_request, trust

XMLSEC1 = "/usr/bin/xmlsec1"
DS = soap.DS_NS
C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ID_ATTRS = [
    "--id-attr:Id", f"{soap.SOAP_NS}:Body",
    "--id-attr:Id", f"{soap.WSU_NS}:Timestamp",
    "--id-attr:Id", f"{soap.WSA_NS}:To",
    "--id-attr:Id", f"{soap.WSA_NS}:Action",
    "--id-attr:Id", f"{soap.WSA_NS}:MessageID",
    "--id-attr:Id", f"{soap.WSSE_NS}:BinarySecurityToken",
]


# The rows of docs/interop.md's matrix that this module proves: (peer, profile, direction, settings,
# result, test). tests/integration/test_interop_matrix.py keeps the document equal to these rows.
XMLSEC1_PEER = "xmlsec1 1.2 (libxmlsec1, OpenSSL)"
JWCRYPTO = "jwcrypto 1.x"
MATRIX = [
    (XMLSEC1_PEER, "ind-wus", "peer signs, gateway verifies", "template, rsa-sha256, exc-c14n, no PrefixList",
     "accepted", "test_xmlsec1_signed_request_is_accepted"),
    (XMLSEC1_PEER, "ind-wus", "peer signs, gateway verifies",
     "template with PrefixLists (SignedInfo and every Reference, SignedInfo only, References only, #default)",
     "accepted; xmlsec1 verifies it too", "test_xmlsec1_signed_request_is_accepted"),
    (XMLSEC1_PEER, "ind-wus", "peer signs, gateway verifies", "with PrefixLists, changed after signing",
     "refused: SIGNATURE", "test_xmlsec1_signed_request_with_prefix_lists_altered_is_refused"),
    (XMLSEC1_PEER, "ind-wus", "gateway signs, peer verifies", "--id-attr for Body, Timestamp, WS-Addressing",
     "verified, 5/5 References", "test_our_signed_request_verifies_with_xmlsec1"),
    (XMLSEC1_PEER, "ind-wus", "peer verifies, gateway refuses", "Body moved into a header (signature wrapping)",
     "xmlsec1 accepts; gateway refuses: SIGNATURE", "test_wrapping_that_xmlsec1_accepts_is_refused_by_us"),
    (XMLSEC1_PEER, "duo-xml", "gateway signs, peer verifies", "enveloped, RSA and ECDSA P-256", "verified",
     "test_our_enveloped_signature_verifies_with_xmlsec1"),
    (XMLSEC1_PEER, "duo-xml", "peer signs, gateway verifies", "enveloped template, without and with PrefixLists",
     "accepted", "test_xmlsec1_enveloped_signature_is_accepted"),
    (JWCRYPTO, "cjib-rest", "gateway signs, peer verifies", "detached JWS, PS256 (RSA) and ES256", "verified",
     "test_our_jws_verifies_with_jwcrypto"),
    (JWCRYPTO, "cjib-rest", "peer signs, gateway verifies", "detached JWS, PS256, RS256, ES256", "accepted",
     "test_jwcrypto_jws_verifies_with_ours"),
]


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


@pytest.fixture
def now():
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def xmlsec1(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([XMLSEC1, *args], capture_output=True, text=True, timeout=60)


def _inclusive(method: etree._Element, prefix_list: str | None) -> None:
    if prefix_list is not None:
        etree.SubElement(method, f"{{{C14N}}}InclusiveNamespaces", nsmap={"ec": C14N}, PrefixList=prefix_list)


def _template(pki_paths, now, lists: dict[str, str] | None = None) -> etree._Element:
    """An envelope with Timestamp, BST and a ds:Signature template, as another stack would make it.

    ``lists``: ec:InclusiveNamespaces PrefixLists for "SignedInfo" and for Reference URIs.
    """
    lists = lists or {}
    env = ind_envelope()
    sec = env.find(f"{{{soap.SOAP_NS}}}Header/{{{soap.WSSE_NS}}}Security")
    ts = etree.SubElement(sec, f"{{{soap.WSU_NS}}}Timestamp", {f"{{{soap.WSU_NS}}}Id": "TS-1"})
    etree.SubElement(ts, f"{{{soap.WSU_NS}}}Created").text = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    etree.SubElement(ts, f"{{{soap.WSU_NS}}}Expires").text = (
        now + dt.timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    bst = etree.SubElement(sec, f"{{{soap.WSSE_NS}}}BinarySecurityToken", {
        "ValueType": wsse.X509V3, "EncodingType": wsse.BASE64, f"{{{soap.WSU_NS}}}Id": "X509-1"})
    bst.text = base64.b64encode(keypair(pki_paths, "ind").cert_der).decode()
    sig = etree.SubElement(sec, f"{{{DS}}}Signature", nsmap={"ds": DS})
    info = etree.SubElement(sig, f"{{{DS}}}SignedInfo")
    _inclusive(etree.SubElement(info, f"{{{DS}}}CanonicalizationMethod", Algorithm=C14N), lists.get("SignedInfo"))
    etree.SubElement(info, f"{{{DS}}}SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    for uri in ("#id-to", "#id-action", "#id-messageid", "#TS-1", "#id-body"):  # another order than ours
        ref = etree.SubElement(info, f"{{{DS}}}Reference", URI=uri)
        transforms = etree.SubElement(ref, f"{{{DS}}}Transforms")
        _inclusive(etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=C14N), lists.get(uri))
        etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
        etree.SubElement(ref, f"{{{DS}}}DigestValue")
    etree.SubElement(sig, f"{{{DS}}}SignatureValue")
    key_info = etree.SubElement(sig, f"{{{DS}}}KeyInfo")
    token_ref = etree.SubElement(key_info, f"{{{soap.WSSE_NS}}}SecurityTokenReference")
    etree.SubElement(token_ref, f"{{{soap.WSSE_NS}}}Reference", URI="#X509-1", ValueType=wsse.X509V3)
    return env


# PrefixLists as Apache WSS4J sends them by default (issue 21), on SignedInfo and every Reference.
WSS4J_LISTS = {"SignedInfo": "soap wsa wsse wsu", "#id-body": "wsa wsse wsu", "#TS-1": "wsse soap wsa",
               "#id-to": "soap wsse", "#id-action": "soap wsa wsse", "#id-messageid": "wsa wsse"}


@pytest.mark.parametrize("lists", [None, WSS4J_LISTS, {"SignedInfo": "soap wsa wsse wsu"},
                                   {"#id-body": "wsa wsse", "#TS-1": "#default wsse"}],
                         ids=["plain", "prefix-lists-everywhere", "signedinfo-only", "references-only"])
def test_xmlsec1_signed_request_is_accepted(pki_paths, now, tmp_path, lists):
    template = tmp_path / "template.xml"
    template.write_bytes(etree.tostring(_template(pki_paths, now, lists), xml_declaration=True, encoding="utf-8"))
    out = tmp_path / "signed.xml"
    done = xmlsec1("--sign", "--privkey-pem", f"{pki_paths['ind-key']},{pki_paths['ind']}", *ID_ATTRS,
                   "--output", str(out), str(template))
    assert done.returncode == 0, done.stderr
    root = xmlsafe.parse(out.read_bytes())
    assert root.findtext(f".//{{{DS}}}SignatureValue").strip()
    assert len(root.findall(f".//{{{C14N}}}InclusiveNamespaces")) == len(lists or {})
    verified = wsse.verify_envelope(root, trust(pki_paths, "ind"), parts=wsse.REQUEST_PARTS, now=now)
    assert verified.message_id == "urn:uuid:6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"
    # And xmlsec1 verifies it too (the PrefixLists mean the same thing to both).
    done = xmlsec1("--verify", "--pubkey-cert-pem", str(pki_paths["ind"]), *ID_ATTRS, str(out))
    assert done.returncode == 0, done.stderr


def test_xmlsec1_signed_request_with_prefix_lists_altered_is_refused(pki_paths, now, tmp_path):
    template = tmp_path / "template.xml"
    template.write_bytes(etree.tostring(_template(pki_paths, now, WSS4J_LISTS)))
    out = tmp_path / "signed.xml"
    done = xmlsec1("--sign", "--privkey-pem", f"{pki_paths['ind-key']},{pki_paths['ind']}", *ID_ATTRS,
                   "--output", str(out), str(template))
    assert done.returncode == 0, done.stderr
    altered = out.read_bytes().replace(b">Haddad<", b">Haddac<")
    assert altered != out.read_bytes()
    with pytest.raises(SignatureInvalid, match="does not verify"):
        wsse.verify_envelope(xmlsafe.parse(altered), trust(pki_paths, "ind"), parts=wsse.REQUEST_PARTS, now=now)


def test_our_signed_request_verifies_with_xmlsec1(pki_paths, now, tmp_path):
    path = tmp_path / "ours.xml"
    path.write_bytes(signed_request(keypair(pki_paths, "ind"), now))
    done = xmlsec1("--verify", "--pubkey-cert-pem", str(pki_paths["ind"]), *ID_ATTRS, str(path))
    assert done.returncode == 0, done.stderr
    assert "SignedInfo References (ok/all): 5/5" in done.stdout + done.stderr


def test_wrapping_that_xmlsec1_accepts_is_refused_by_us(pki_paths, now, tmp_path):
    # A valid signature proves nothing about where the signed element sits (NOTES.md).
    root = xmlsafe.parse(signed_request(keypair(pki_paths, "ind"), now))
    body = root.find(f"{{{soap.SOAP_NS}}}Body")
    forged = copy.deepcopy(body)
    del forged.attrib[f"{{{soap.WSU_NS}}}Id"]
    wrapper = etree.SubElement(root.find(f"{{{soap.SOAP_NS}}}Header"), "{urn:example:attacker}Wrapper")
    root.append(forged)
    wrapper.append(body)
    path = tmp_path / "wrapped.xml"
    path.write_bytes(etree.tostring(root))
    assert xmlsec1("--verify", "--pubkey-cert-pem", str(pki_paths["ind"]), *ID_ATTRS, str(path)).returncode == 0
    with pytest.raises(SignatureInvalid):
        wsse.verify_envelope(xmlsafe.parse(path.read_bytes()), trust(pki_paths, "ind"),
                             parts=wsse.REQUEST_PARTS, now=now)


@pytest.mark.parametrize("name", ["gateway", "cjib-ec"])
def test_our_enveloped_signature_verifies_with_xmlsec1(pki_paths, tmp_path, name):
    melding = xmlsafe.parse((SAMPLES / "duo-inburgeraarmelding.xml").read_bytes())
    path = tmp_path / "duo.xml"
    path.write_bytes(xmldsig.sign_enveloped(melding, keypair(pki_paths, name)))
    cert = pki_paths[name][1] if isinstance(pki_paths[name], tuple) else pki_paths[name]
    done = xmlsec1("--verify", "--pubkey-cert-pem", str(cert), str(path))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("lists", [None, {"SignedInfo": "ds #default", "": "#default"}],
                         ids=["plain", "prefix-lists"])
def test_xmlsec1_enveloped_signature_is_accepted(pki_paths, now, tmp_path, lists):
    lists = lists or {}
    melding = xmlsafe.parse((SAMPLES / "duo-inburgeraarmelding.xml").read_bytes())
    sig = etree.SubElement(melding, f"{{{DS}}}Signature", nsmap={"ds": DS})
    info = etree.SubElement(sig, f"{{{DS}}}SignedInfo")
    _inclusive(etree.SubElement(info, f"{{{DS}}}CanonicalizationMethod", Algorithm=C14N), lists.get("SignedInfo"))
    etree.SubElement(info, f"{{{DS}}}SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    ref = etree.SubElement(info, f"{{{DS}}}Reference", URI="")
    transforms = etree.SubElement(ref, f"{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=xmldsig.ENVELOPED)
    _inclusive(etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=C14N), lists.get(""))
    etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(ref, f"{{{DS}}}DigestValue")
    etree.SubElement(sig, f"{{{DS}}}SignatureValue")
    etree.SubElement(etree.SubElement(etree.SubElement(sig, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data"),
                     f"{{{DS}}}X509Certificate")
    template = tmp_path / "duo-template.xml"
    template.write_bytes(etree.tostring(melding))
    out = tmp_path / "duo-signed.xml"
    done = xmlsec1("--sign", "--privkey-pem", f"{pki_paths['duo-key']},{pki_paths['duo']}",
                   "--output", str(out), str(template))
    assert done.returncode == 0, done.stderr
    xmldsig.verify_enveloped(xmlsafe.parse(out.read_bytes()), trust(pki_paths, "duo"), now=now)


# ------------------------------------------------------------------------------- JWS with jwcrypto

BODY = b'{"opdrachtgeverReferentie":"3f1c","bedrag":{"centen":12500,"valuta":"EUR"}}'


@pytest.mark.parametrize("name", ["cjib", "cjib-ec"])
def test_our_jws_verifies_with_jwcrypto(pki_paths, now, name):
    from jwcrypto import jwk
    from jwcrypto import jws as jw

    key = keypair(pki_paths, name)
    value = jws.sign_detached(BODY, key, now=now, htm="POST", htu="/v1/vorderingen")
    protected, _, signature = value.split(".")
    token = jw.JWS()
    token.deserialize(f"{protected}.{jws._b64(BODY)}.{signature}")  # detached: put the payload back
    token.verify(jwk.JWK.from_pyca(key.certificate.public_key()))
    assert token.payload == BODY


@pytest.mark.parametrize("name, alg", [("cjib", "PS256"), ("cjib", "RS256"), ("cjib-ec", "ES256")])
def test_jwcrypto_jws_verifies_with_ours(pki_paths, now, name, alg):
    from jwcrypto import jwk
    from jwcrypto import jws as jw

    from gateway.security.keys import kid

    key = keypair(pki_paths, name)
    token = jw.JWS(BODY)
    header = {"alg": alg, "kid": kid(key.certificate), "iat": int(now.timestamp()), "htm": "POST",
              "htu": "/v1/vorderingen"}
    token.add_signature(jwk.JWK.from_pyca(key.private_key), alg=alg, protected=json.dumps(header))
    protected, _, signature = token.serialize(compact=True).split(".")
    partner = trust(pki_paths, "cjib", name)
    got = jws.verify_detached(f"{protected}..{signature}", BODY, partner, now=now, htm="POST",
                              htu="/v1/vorderingen")
    assert got["alg"] == alg

"""Exclusive c14n's InclusiveNamespaces PrefixList (issue 21), on ind-wus and duo-xml signatures.

Apache WSS4J (and so CXF) sends ``<ec:InclusiveNamespaces PrefixList="...">`` in SignedInfo's
CanonicalizationMethod and in each Reference's exc-c14n Transform by default. Such signatures must
verify, the placement and anti-wrapping checks must keep their strength with them, and any other
canonicalization parameter is refused with a message that names it.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from lxml import etree

from gateway.core.errors import SignatureInvalid
from gateway.security import wsse, xmldsig
from gateway.security.c14n import EC_NS
from gateway.wire import soap, xmlsafe
from gateway.wire.xmlsafe import exc_c14n as canonical
from tests.pki_fixtures import (
    IND_MESSAGE_ID,
    SAMPLES,
    keypair,
    make_pki,
    signed_request,
    trust,
    with_prefix_lists,
)

NS = {"soap": soap.SOAP_NS, "wsse": soap.WSSE_NS, "wsu": soap.WSU_NS, "wsa": soap.WSA_NS, "ds": soap.DS_NS,
      "ec": EC_NS, "ind": "urn:nl:ind:gegevenslevering:inburgering:v1"}
INCLUSIVE = f"{{{EC_NS}}}InclusiveNamespaces"


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


@pytest.fixture
def now():
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def wss4j_like(pki_paths, now) -> bytes:
    """A request signed with WSS4J's default prefix lists."""
    key = keypair(pki_paths, "ind")
    return with_prefix_lists(signed_request(key, now), key)


def verify(data: bytes, pki_paths, now):
    return wsse.verify_envelope(xmlsafe.parse(data), trust(pki_paths, "ind"), parts=wsse.REQUEST_PARTS, now=now)


def refused(data: bytes, pki_paths, now, match: str):
    with pytest.raises(SignatureInvalid, match=match) as err:
        verify(data, pki_paths, now)
    assert type(err.value) is SignatureInvalid and err.value.code == "SIGNATURE"
    assert "Haddad" not in str(err.value)


def test_prefix_lists_change_the_canonical_form(wss4j_like):
    # Otherwise the tests below would prove nothing: the lists add namespace declarations.
    root = xmlsafe.parse(wss4j_like)
    body = root.find("soap:Body", NS)
    assert canonical(body, ["wsa", "wsse", "wsu"]) != canonical(body)
    assert b'xmlns:wsa=' in canonical(body, ["wsa", "wsse", "wsu"])
    info = root.find(".//ds:SignedInfo", NS)
    assert info.find("ds:CanonicalizationMethod/ec:InclusiveNamespaces", NS).get("PrefixList") == "soap wsa wsse wsu"


def test_wss4j_default_prefix_lists_are_accepted(wss4j_like, pki_paths, now):
    verified = verify(wss4j_like, pki_paths, now)
    assert verified.message_id == IND_MESSAGE_ID
    assert verified.payload.find(".//ind:geslachtsnaam", NS).text == "Haddad"


@pytest.mark.parametrize("lists", [
    {"SignedInfo": "soap wsa wsse wsu"},  # SignedInfo only
    {"#id-body": "wsa wsse", "#id-messageid": "soap"},  # References only
    {"SignedInfo": "#default ds", "#id-body": "#default wsa"},  # "#default" and a prefix not in scope
    {"SignedInfo": "", "#id-body": ""},  # an empty list
])
def test_other_prefix_lists_are_accepted(lists, pki_paths, now):
    key = keypair(pki_paths, "ind")
    verify(with_prefix_lists(signed_request(key, now), key, lists), pki_paths, now)


def test_altered_after_signing_is_refused(wss4j_like, pki_paths, now):
    refused(wss4j_like.replace(b">Haddad<", b">Haddac<"), pki_paths, now, "does not verify")


def test_prefix_list_changed_after_signing_is_refused(wss4j_like, pki_paths, now):
    root = xmlsafe.parse(wss4j_like)
    ref = root.find(".//ds:Reference[@URI='#id-body']", NS)
    ref.find("ds:Transforms/ds:Transform/ec:InclusiveNamespaces", NS).set("PrefixList", "wsa")
    refused(etree.tostring(root), pki_paths, now, "does not verify")


def test_prefix_list_removed_after_signing_is_refused(wss4j_like, pki_paths, now):
    root = xmlsafe.parse(wss4j_like)
    transform = root.find(".//ds:Reference[@URI='#id-body']/ds:Transforms/ds:Transform", NS)
    transform.remove(transform[0])
    refused(etree.tostring(root), pki_paths, now, "does not verify")


def test_wrapping_with_prefix_lists_is_refused(wss4j_like, pki_paths, now):
    root = xmlsafe.parse(wss4j_like)
    body = root.find("soap:Body", NS)
    forged = copy.deepcopy(body)
    del forged.attrib[f"{{{soap.WSU_NS}}}Id"]
    forged.find(".//ind:geslachtsnaam", NS).text = "Mallory"
    etree.SubElement(root.find("soap:Header", NS), "{urn:example:attacker}Wrapper").append(body)
    root.append(forged)
    refused(etree.tostring(root), pki_paths, now, "outside the signed parts")


# -- unknown parameters and transforms: each refused, with a message naming the check


def _tamper_method(data: bytes, path: str, change) -> bytes:
    root = xmlsafe.parse(data)
    change(root.find(path, NS))
    return etree.tostring(root)


SIGNED_INFO_C14N = ".//ds:SignedInfo/ds:CanonicalizationMethod"
BODY_TRANSFORM = ".//ds:Reference[@URI='#id-body']/ds:Transforms/ds:Transform"


@pytest.mark.parametrize("path", [SIGNED_INFO_C14N, BODY_TRANSFORM])
@pytest.mark.parametrize("case, change, match", [
    ("other-element", lambda m: etree.SubElement(m, f"{{{EC_NS}}}ExclusiveNamespaces", PrefixList="a"),
     "unsupported canonicalization parameter"),
    ("foreign-element", lambda m: etree.SubElement(m, "{urn:example:attacker}Option"),
     "unsupported canonicalization parameter"),
    ("xpath", lambda m: etree.SubElement(m, f"{{{soap.DS_NS}}}XPath"), "unsupported canonicalization parameter"),
    ("two-lists", lambda m: (etree.SubElement(m, f"{{{EC_NS}}}InclusiveNamespaces", PrefixList="wsa"),
                             etree.SubElement(m, f"{{{EC_NS}}}InclusiveNamespaces", PrefixList="wsse")),
     "more than one"),
    ("extra-attribute", lambda m: etree.SubElement(m, f"{{{EC_NS}}}InclusiveNamespaces", PrefixList="wsa", Other="1"),
     "more than a PrefixList"),
    ("no-prefix-list", lambda m: etree.SubElement(m, f"{{{EC_NS}}}InclusiveNamespaces"), "more than a PrefixList"),
    ("child-in-list", lambda m: etree.SubElement(etree.SubElement(m, f"{{{EC_NS}}}InclusiveNamespaces",
                                                                  PrefixList="wsa"), "x"),
     "more than a PrefixList"),
    ("double-space", lambda m: etree.SubElement(m, f"{{{EC_NS}}}InclusiveNamespaces", PrefixList="wsa  wsse"),
     "PrefixList"),
    ("not-a-prefix", lambda m: etree.SubElement(m, f"{{{EC_NS}}}InclusiveNamespaces", PrefixList="wsa x:y"),
     "PrefixList"),
    ("text", lambda m: setattr(m, "text", "wsa"), "holds text"),
])
def test_unknown_canonicalization_parameter_is_refused(path, case, change, match, pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now)
    refused(_tamper_method(data, path, change), pki_paths, now, match)


@pytest.mark.parametrize("algorithm", [
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/TR/1999/REC-xslt-19991116",
])
def test_unknown_transform_is_refused(algorithm, pki_paths, now):
    data = signed_request(keypair(pki_paths, "ind"), now)
    refused(_tamper_method(data, BODY_TRANSFORM, lambda t: t.set("Algorithm", algorithm)), pki_paths, now,
            "unsupported transform")


# -- duo-xml enveloped signatures


def melding():
    return xmlsafe.parse((SAMPLES / "duo-inburgeraarmelding.xml").read_bytes())


@pytest.mark.parametrize("lists", [{"SignedInfo": "ds #default", "": "#default"}, {"": "ds"}, {"SignedInfo": "ds"}])
def test_enveloped_signature_with_prefix_lists_is_accepted(lists, pki_paths, now):
    key = keypair(pki_paths, "gateway")
    data = with_prefix_lists(xmldsig.sign_enveloped(melding(), key), key, lists)
    root = xmlsafe.parse(data)
    assert root.find(".//ec:InclusiveNamespaces", NS) is not None
    verified = xmldsig.verify_enveloped(root, trust(pki_paths, "gateway"), now=now)
    assert verified.find("ds:Signature", NS) is None


def test_enveloped_signature_altered_is_refused(pki_paths, now):
    key = keypair(pki_paths, "gateway")
    data = with_prefix_lists(xmldsig.sign_enveloped(melding(), key), key, {"SignedInfo": "ds", "": "ds"})
    with pytest.raises(SignatureInvalid, match="does not verify"):
        xmldsig.verify_enveloped(xmlsafe.parse(data.replace(b">Haddad<", b">Haddac<")),
                                 trust(pki_paths, "gateway"), now=now)


@pytest.mark.parametrize("where, match", [
    ("ds:Signature/ds:SignedInfo/ds:CanonicalizationMethod", "unsupported canonicalization parameter"),
    ("ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform[2]", "unsupported canonicalization parameter"),
    ("ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform[1]", "unsupported transform parameter"),
])
def test_enveloped_signature_unknown_parameter_is_refused(where, match, pki_paths, now):
    root = xmlsafe.parse(xmldsig.sign_enveloped(melding(), keypair(pki_paths, "gateway")))
    etree.SubElement(root.find(where, NS), "{urn:example:attacker}Option")
    with pytest.raises(SignatureInvalid, match=match) as err:
        xmldsig.verify_enveloped(xmlsafe.parse(etree.tostring(root)), trust(pki_paths, "gateway"), now=now)
    assert err.value.code == "SIGNATURE"



def test_answer_to_haal_meldingen_with_prefix_lists_is_accepted(pki_paths, now):
    # IND's answers are checked with RESPONSE_PARTS (RelatesTo too): the same code, the same lists.
    from tests.pki_fixtures import ind_envelope

    key = keypair(pki_paths, "ind")
    data = wsse.sign_envelope(ind_envelope(relates_to="urn:uuid:request"), key, parts=wsse.RESPONSE_PARTS, now=now)
    lists = {"SignedInfo": "soap wsa wsse wsu", "#id-body": "wsa wsse wsu", "#id-relatesto": "soap wsa wsse"}
    root = xmlsafe.parse(with_prefix_lists(data, key, lists))
    verified = wsse.verify_envelope(root, trust(pki_paths, "ind"), parts=wsse.RESPONSE_PARTS, now=now)
    assert verified.relates_to == "urn:uuid:request"

"""The partners' own samples (vendored in tests/fixtures/contracts/samples) go through our codecs and
mapping unchanged."""

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from lxml import etree

from adapters.duo import codec as duo
from adapters.ind import codec as ind
from gateway.mapping.ind_to_duo import bericht_id_for, to_inburgeraarmelding
from gateway.rules import engine as rules
from gateway.wire import xmlsafe
from tests.paths import CONTRACTS, REPO, SAMPLES

RULESET = REPO / "config" / "rules" / "inburgeringsplicht-2026.1.yaml"


def sample(name):
    return xmlsafe.parse((SAMPLES / name).read_bytes())


def canonical(el):
    """exc-c14n with the layout whitespace of a pretty-printed sample removed."""
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    return xmlsafe.exc_c14n(etree.fromstring(etree.tostring(el), parser))


def ind_sample_melding():
    envelope = sample("ind-ontvangmelding-request.xml")
    el = envelope.find(f".//{{{ind.IND_NS}}}VergunningMelding")
    xmlsafe.validate(el, xmlsafe.IND_XSD)
    return ind.decode_melding(el)


def test_ind_sample_action_is_ours():
    envelope = sample("ind-ontvangmelding-request.xml")
    action = envelope.find(".//{http://www.w3.org/2005/08/addressing}Action").text
    assert action == ind.ACTION_ONTVANG


def test_ind_sample_passes_the_business_rules():
    assert ind.business_rules(ind_sample_melding()) == []


def test_ind_sample_translates_to_the_duo_sample():
    m = ind_sample_melding()
    ruleset = rules.load(RULESET)
    received_at = dt.datetime.fromisoformat("2026-11-02T09:14:05+01:00")
    out = to_inburgeraarmelding(m, received_at=received_at, ruleset=ruleset)
    ours = duo.encode_inburgeraarmelding(out)
    xmlsafe.validate(ours, xmlsafe.DUO_XSD)

    expected = sample("duo-inburgeraarmelding.xml")
    xmlsafe.validate(expected, xmlsafe.DUO_XSD)
    # Only berichtId (ours is the uuid5 of meldingId) and the rule set digest may differ.
    assert out.bericht_id == bericht_id_for(m.melding_id)
    assert out.beoordeling.regelset_versie == ruleset.version
    expected_model = duo.decode_inburgeraarmelding(expected)
    assert expected_model.beoordeling.regelset_versie.split("@")[0] == ruleset.name
    aligned = dataclasses.replace(
        expected_model,
        bericht_id=out.bericht_id,
        beoordeling=dataclasses.replace(expected_model.beoordeling, regelset_versie=ruleset.version),
    )
    assert out == aligned
    assert canonical(ours) == canonical(duo.encode_inburgeraarmelding(aligned))
    # and in canonical form against the sample document itself, with our two values put in
    ns = {"duo": duo.DUO_NS}
    expected.find("duo:berichtId", ns).text = out.bericht_id
    expected.find("duo:beoordeling/duo:regelsetVersie", ns).text = ruleset.version
    assert canonical(ours) == canonical(expected)


def test_duo_vordering_sample_decodes_and_passes_cjibs_rules():
    el = sample("duo-vorderingoverdracht.xml")
    xmlsafe.validate(el, xmlsafe.DUO_XSD)
    v = duo.decode_vorderingoverdracht(el)
    assert v.vordering_id == "c41d8a2e-6f0b-4a7c-9e13-5b2f8d6a0c94"
    assert v.bedrag_in_centen == 34000
    assert duo.vordering_rules(v, dt.date(2026, 11, 2)) == []
    assert canonical(duo.encode_vorderingoverdracht(v)) == canonical(el)


def manifest(directory: Path) -> dict[str, str]:
    """``SHA256SUMS`` in ``directory`` (sha256sum format) as path -> digest."""
    entries: dict[str, str] = {}
    for line in (directory / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.strip().lstrip("*")] = digest
    return entries


def test_vendored_samples_are_the_partners_samples_unchanged():
    """The samples are pinned by tests/fixtures/contracts/SHA256SUMS, which lists exactly them."""
    entries = manifest(CONTRACTS)
    present = {f"samples/{f.name}" for f in SAMPLES.iterdir()}
    assert set(entries) == present == {"samples/cjib-vordering.json", "samples/duo-inburgeraarmelding.xml",
                                       "samples/duo-vorderingoverdracht.xml",
                                       "samples/ind-ontvangmelding-request.xml"}
    for name, digest in entries.items():
        assert hashlib.sha256((CONTRACTS / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("name", ["ind-vergunningmelding-v1.xsd", "duo-inburgering-v1.xsd"])
def test_vendored_schemas_match_their_manifest(name):
    """The schemas the samples are validated against are the vendored, pinned ones."""
    digest = manifest(xmlsafe.XSD_DIR)[name]
    assert hashlib.sha256((xmlsafe.XSD_DIR / name).read_bytes()).hexdigest() == digest

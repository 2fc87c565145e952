"""IND and DUO codecs: round trips, schema-valid output, business rules."""

import dataclasses
import datetime as dt

import pytest
from lxml import etree

from adapters.duo import codec as duo
from adapters.ind import codec as ind
from gateway.core.models import (
    Adres,
    Beoordeling,
    Debiteur,
    DuoBron,
    DuoDatum,
    DuoOntvangstbevestiging,
    DuoPersoon,
    DuoVerblijf,
    Fout,
    InburgeraarMelding,
    IndMelding,
    IndPersoon,
    IndVerblijf,
    Levering,
    VorderingOverdracht,
    VorderingStatus,
)
from gateway.wire import xmlsafe

D = dt.date.fromisoformat
DIGEST = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
VERSIE = "inburgeringsplicht-2026.1@sha256:" + "ab" * 32


def reparse(el):
    """Serialize and parse again, as the wire does."""
    return xmlsafe.parse(etree.tostring(el, xml_declaration=True, encoding="UTF-8"))


# ---------------------------------------------------------------- IND

FULL_MELDING = IndMelding(
    melding_id="6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f",
    volgnummer=1041,
    soort_melding="CORRECTIE",
    correctie_van="0c8d3e55-1111-4aaa-8bbb-123456789abc",
    aangemaakt_op="2026-11-02T09:14:03+01:00",
    persoon=IndPersoon(v_nummer="3012345678", bsn="111222333", geslachtsnaam="Haddad", voorvoegsel="al",
                       voornamen="Rania Noor", geboortedatum="1991-07-00", geslacht="V",
                       nationaliteiten=("SYR", "XXB"), gemeentecode="0363"),
    verblijf=IndVerblijf(documentnummer="NL4K7TR21", documentsoort="EU_VERBLIJFSDOCUMENT",
                         verblijfsdoel="VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND",
                         wettelijke_grondslag="VW2000_ART8_E", unierechtelijke_grondslag="ZAMBRANO",
                         datum_besluit=D("2026-10-28"), ingangsdatum=D("2026-10-15"), einddatum=D("2031-10-15")),
)
MINIMAL_MELDING = IndMelding(
    melding_id="11111111-2222-4333-8444-555555555555",
    volgnummer=1,
    soort_melding="VERLEEND",
    aangemaakt_op="2026-11-02T08:14:03Z",
    persoon=IndPersoon(v_nummer="3012345679", geslachtsnaam="Ng", geboortedatum="0000-00-00", geslacht="O",
                       nationaliteiten=("XXX",)),
    verblijf=IndVerblijf(documentnummer="ABC123", documentsoort="VERBLIJFSVERGUNNING_ASIEL_BEPAALDE_TIJD",
                         verblijfsdoel="ASIEL", wettelijke_grondslag="VW2000_ART8_C",
                         datum_besluit=D("2026-10-28"), ingangsdatum=D("2026-10-28")),
)


@pytest.mark.parametrize("m", [FULL_MELDING, MINIMAL_MELDING], ids=["full", "minimal"])
def test_ind_melding_round_trip_and_schema(m):
    el = ind.encode_melding(m)
    xmlsafe.validate(el, xmlsafe.IND_XSD)
    assert el.prefix == "ind" and el.tag == f"{{{ind.IND_NS}}}VergunningMelding"
    assert ind.decode_melding(reparse(el)) == m


def test_ind_decode_wrong_element_is_refused():
    from gateway.core.errors import MalformedInput

    with pytest.raises(MalformedInput):
        ind.decode_melding(etree.Element(f"{{{ind.IND_NS}}}Ontvangstbevestiging"))


def test_ind_ontvangstbevestiging_is_schema_valid():
    el = ind.encode_ontvangstbevestiging("9a7f7c55-0c55-4c3e-8b8e-0e8f3f9c1a10", FULL_MELDING.melding_id, 1041,
                                         "2026-11-02T09:14:05+01:00", DIGEST)
    xmlsafe.validate(el, xmlsafe.IND_XSD)
    assert [c.text for c in el] == ["9a7f7c55-0c55-4c3e-8b8e-0e8f3f9c1a10", FULL_MELDING.melding_id, "1041",
                                   "2026-11-02T09:14:05+01:00", DIGEST]


def test_ind_haal_verzoek_round_trip():
    el = ind.encode_haal_verzoek(1042, 100)
    xmlsafe.validate(el, xmlsafe.IND_XSD)
    assert ind.decode_haal_verzoek(reparse(el)) == (1042, 100)


def test_ind_haal_antwoord_round_trip():
    el = ind.encode_haal_antwoord([ind.encode_melding(MINIMAL_MELDING), ind.encode_melding(FULL_MELDING)], 1041)
    xmlsafe.validate(el, xmlsafe.IND_XSD)
    page = ind.decode_haal_antwoord(reparse(el))
    assert page.laatste_volgnummer == 1041
    assert [ind.decode_melding(xmlsafe.parse(b)) for b in page.meldingen] == [MINIMAL_MELDING, FULL_MELDING]
    # each notification digests the same as when it is pushed on its own
    pushed = xmlsafe.sha256_b64(xmlsafe.exc_c14n(ind.encode_melding(FULL_MELDING)))
    assert xmlsafe.sha256_b64(xmlsafe.exc_c14n(xmlsafe.parse(page.meldingen[1]))) == pushed


def test_ind_empty_haal_antwoord():
    el = ind.encode_haal_antwoord([], 0)
    xmlsafe.validate(el, xmlsafe.IND_XSD)
    assert ind.decode_haal_antwoord(el).meldingen == ()


def test_ind_actions_match_the_wsdl():
    wsdl = etree.parse(str(xmlsafe.XSD_DIR / "ind-vergunningmelding-v1.wsdl"))
    actions = set(wsdl.xpath("//@*[local-name()='Action']")) | set(wsdl.xpath("//@soapAction"))
    assert {ind.ACTION_ONTVANG, ind.ACTION_ONTVANG_RESPONSE, ind.ACTION_HAAL, ind.ACTION_HAAL_RESPONSE} == actions
    assert ind.ACTION_ONTVANG == "urn:nl:ind:gegevenslevering:inburgering:v1/OntvangMelding"


@pytest.mark.parametrize(
    "changes, codes",
    [
        ({}, []),
        ({"soort_melding": "CORRECTIE", "correctie_van": None}, ["CORRECTIE_VAN"]),
        ({"soort_melding": "VERLEEND"}, ["CORRECTIE_VAN"]),  # correctieVan without CORRECTIE
        ({"soort_melding": "VERLEEND", "correctie_van": None}, []),
        ({"persoon": dataclasses.replace(FULL_MELDING.persoon, bsn="111222334")}, ["BSN_ELFPROEF"]),
        ({"persoon": dataclasses.replace(FULL_MELDING.persoon, bsn=None)}, []),
        ({"correctie_van": None, "persoon": dataclasses.replace(FULL_MELDING.persoon, bsn="000000000")},
         ["CORRECTIE_VAN", "BSN_ELFPROEF"]),
    ],
)
def test_ind_business_rules(changes, codes):
    broken = ind.business_rules(dataclasses.replace(FULL_MELDING, **changes))
    assert [code for code, _ in broken] == codes
    for _, message in broken:  # name the field, never the value
        assert "111222334" not in message and "000000000" not in message and "0c8d3e55" not in message


def test_ind_codec_reexports_the_11_test():
    assert ind.bsn_valid("111222333") and not ind.bsn_valid("111222334")


# ---------------------------------------------------------------- DUO: InburgeraarMelding

MELDING = InburgeraarMelding(
    bericht_id="4c5173a6-2c2b-536b-a2b0-48a675279fb4",
    bron=DuoBron("IND", "6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f", 1041, "2026-11-02T09:14:03+01:00"),
    soort_melding="CORRECTIE",
    vervangt_bericht_id="9d6b8c1a-5e0f-5a3b-8c7d-6e5f4a3b2c1d",
    persoon=DuoPersoon(v_nummer="3012345678", geslachtsnaam="Haddad", geboortedatum=DuoDatum(1991, 7),
                       geslacht="V", nationaliteiten=("SYR", "XXA"), bsn="111222333", voorvoegsel="al",
                       voornamen="Rania", gemeentecode="0363"),
    verblijf=DuoVerblijf(documentsoort="EU_VERBLIJFSDOCUMENT", verblijfsdoel="GEZINSVORMING",
                         wettelijke_grondslag="VW2000_ART8_E", unierechtelijke_grondslag="CHAVEZ_VILCHEZ",
                         datum_besluit=D("2026-10-28"), ingangsdatum=D("2026-10-15"), einddatum=D("2031-10-15")),
    beoordeling=Beoordeling("NIET_PLICHTIG", "UNIERECHT_ART8E", VERSIE),
    levering=Levering("2026-11-02T09:14:05+01:00", 7, 0),
)


@pytest.mark.parametrize(
    "m",
    [
        MELDING,
        dataclasses.replace(MELDING, soort_melding="NIEUW", vervangt_bericht_id=None,
                            persoon=dataclasses.replace(MELDING.persoon, geboortedatum=DuoDatum(), bsn=None,
                                                        voorvoegsel=None, voornamen=None, gemeentecode=None),
                            verblijf=dataclasses.replace(MELDING.verblijf, unierechtelijke_grondslag=None,
                                                         einddatum=None)),
        dataclasses.replace(MELDING, persoon=dataclasses.replace(MELDING.persoon, geboortedatum=DuoDatum(1991, 7, 4))),
        dataclasses.replace(MELDING, persoon=dataclasses.replace(MELDING.persoon, geboortedatum=DuoDatum(1991))),
    ],
    ids=["full", "minimal", "full-date", "year-only"],
)
def test_duo_inburgeraarmelding_round_trip_and_schema(m):
    el = duo.encode_inburgeraarmelding(m)
    xmlsafe.validate(el, xmlsafe.DUO_XSD)
    assert el.prefix == "duo"
    assert duo.decode_inburgeraarmelding(reparse(el)) == m


def test_duo_decode_ignores_the_enveloped_signature():
    el = duo.encode_inburgeraarmelding(MELDING)
    etree.SubElement(el, "{http://www.w3.org/2000/09/xmldsig#}Signature")
    xmlsafe.validate(el, xmlsafe.DUO_XSD)
    assert duo.decode_inburgeraarmelding(el) == MELDING


# ---------------------------------------------------------------- DUO: Ontvangstbevestiging, VorderingStatus

@pytest.mark.parametrize(
    "b",
    [
        DuoOntvangstbevestiging("4c5173a6-2c2b-536b-a2b0-48a675279fb4", "ONTVANGEN", "2026-11-02T09:14:06+01:00",
                                DIGEST, kenmerk="DUO-2026/000123"),
        DuoOntvangstbevestiging("4c5173a6-2c2b-536b-a2b0-48a675279fb4", "AFGEWEZEN", "2026-11-02T09:14:06+01:00",
                                DIGEST, fouten=(Fout("BSN_ELFPROEF", "bsn fails the 11-test", "/x/bsn"),
                                                Fout("SCHEMA", "schema invalid"))),
    ],
    ids=["accepted", "refused"],
)
def test_duo_ontvangstbevestiging_round_trip_and_schema(b):
    el = duo.encode_ontvangstbevestiging(b)
    xmlsafe.validate(el, xmlsafe.DUO_XSD)
    assert duo.decode_ontvangstbevestiging(reparse(el)) == b


@pytest.mark.parametrize(
    "s",
    [
        VorderingStatus("5b7c1a2e-6f0b-4a7c-9e13-5b2f8d6a0c94", "c41d8a2e-6f0b-4a7c-9e13-5b2f8d6a0c94",
                        "IN_BEHANDELING_BIJ_CJIB", "2026-11-02T10:00:00+01:00", cjib_zaaknummer="CJIB-2026-77",
                        openstaand_bedrag_in_centen=34000),
        VorderingStatus("5b7c1a2e-6f0b-4a7c-9e13-5b2f8d6a0c94", "c41d8a2e-6f0b-4a7c-9e13-5b2f8d6a0c94",
                        "AFGEWEZEN_DOOR_CJIB", "2026-11-02T10:00:00+01:00",
                        fouten=(Fout("AANMANINGSTERMIJN_TE_KORT", "too short", "/aanmaningsdatum"),)),
    ],
    ids=["in-behandeling", "afgewezen"],
)
def test_duo_vorderingstatus_round_trip_and_schema(s):
    el = duo.encode_vorderingstatus(s)
    xmlsafe.validate(el, xmlsafe.DUO_XSD)
    assert duo.decode_vorderingstatus(reparse(el)) == s


# ---------------------------------------------------------------- DUO: VorderingOverdracht and CJIB's rules

VORDERING = VorderingOverdracht(
    vordering_id="c41d8a2e-6f0b-4a7c-9e13-5b2f8d6a0c94",
    soort_vordering="BESTUURLIJKE_BOETE",
    debiteur=Debiteur(bsn="123456782", geslachtsnaam="Tesfaye", geboortedatum=D("1988-04-12"),
                      adres=Adres("Kanaalweg", 17, "3526KL", "Utrecht", huisnummertoevoeging="B"),
                      v_nummer="3098765432", voornamen="Meron"),
    bedrag_in_centen=34000,
    beschikking_kenmerk="DUO-BB-2026-018274",
    beschikking_datum=D("2026-06-03"),
    beschikking_grondslag="WI2013_ART28",
    vervaldatum=D("2026-08-03"),
    aanmaning_verzonden_op=D("2026-09-01"),
)


@pytest.mark.parametrize(
    "v",
    [
        VORDERING,
        dataclasses.replace(VORDERING, soort_vordering="LENING_INBURGERING", debiteur=Debiteur(
            bsn="111222333", geslachtsnaam="Ng", geboortedatum=D("1990-01-01"),
            adres=Adres("Dorpsstraat", 1, "1234AB", "Ergens"), voorvoegsel="van")),
    ],
    ids=["full", "minimal"],
)
def test_duo_vorderingoverdracht_round_trip_and_schema(v):
    el = duo.encode_vorderingoverdracht(v)
    xmlsafe.validate(el, xmlsafe.DUO_XSD)
    assert duo.decode_vorderingoverdracht(reparse(el)) == v


HANDOVER = D("2026-11-02")


@pytest.mark.parametrize(
    "changes, handover, codes",
    [
        ({}, HANDOVER, []),
        ({"debiteur": dataclasses.replace(VORDERING.debiteur, bsn="123456783")}, HANDOVER, ["BSN_ELFPROEF"]),
        ({"vervaldatum": HANDOVER, "aanmaning_verzonden_op": HANDOVER}, HANDOVER,
         ["VERVALDATUM_NIET_VERSTREKEN", "AANMANINGSTERMIJN_TE_KORT"]),
        ({"aanmaning_verzonden_op": D("2026-08-02")}, HANDOVER, ["AANMANING_VOOR_VERVALDATUM"]),
        ({"aanmaning_verzonden_op": D("2026-08-03")}, HANDOVER, []),  # on vervaldatum is allowed
        ({"aanmaning_verzonden_op": D("2026-10-19")}, HANDOVER, []),  # exactly 14 days before
        ({"aanmaning_verzonden_op": D("2026-10-20")}, HANDOVER, ["AANMANINGSTERMIJN_TE_KORT"]),  # 13 days
        ({"vervaldatum": D("2026-11-01"), "aanmaning_verzonden_op": D("2026-11-01")}, HANDOVER,
         ["AANMANINGSTERMIJN_TE_KORT"]),
    ],
)
def test_vordering_rules(changes, handover, codes):
    fouten = duo.vordering_rules(dataclasses.replace(VORDERING, **changes), handover)
    assert [f.code for f in fouten] == codes
    for f in fouten:
        assert f.pad is not None and f.pad.startswith("/VorderingOverdracht/")
        assert "123456783" not in f.omschrijving and "2026" not in f.omschrijving


def test_vordering_rules_paths():
    bad = dataclasses.replace(VORDERING, debiteur=dataclasses.replace(VORDERING.debiteur, bsn="123456783"),
                              vervaldatum=D("2026-12-01"), aanmaning_verzonden_op=D("2026-11-30"))
    assert {(f.code, f.pad) for f in duo.vordering_rules(bad, HANDOVER)} == {
        ("BSN_ELFPROEF", "/VorderingOverdracht/debiteur/bsn"),
        ("VERVALDATUM_NIET_VERSTREKEN", "/VorderingOverdracht/vervaldatum"),
        ("AANMANING_VOOR_VERVALDATUM", "/VorderingOverdracht/aanmaningVerzondenOp"),
        ("AANMANINGSTERMIJN_TE_KORT", "/VorderingOverdracht/aanmaningVerzondenOp"),
    }


def test_decoder_errors_do_not_show_values():
    from gateway.core.errors import MalformedInput

    el = duo.encode_vorderingoverdracht(VORDERING)
    el.find(f"{{{duo.DUO_NS}}}debiteur/{{{duo.DUO_NS}}}geboortedatum").text = "1988-13-12"
    with pytest.raises(MalformedInput) as info:
        duo.decode_vorderingoverdracht(el)
    assert "1988" not in str(info.value) and info.value.__cause__ is None
    el = ind.encode_melding(FULL_MELDING)
    el.find(f"{{{ind.IND_NS}}}volgnummer").text = "abc"
    with pytest.raises(MalformedInput):
        ind.decode_melding(el)

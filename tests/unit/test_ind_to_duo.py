"""IND VergunningMelding -> DUO InburgeraarMelding: a table of mapping cases, without servers."""

import dataclasses
import datetime as dt
import uuid
from pathlib import Path

import pytest

from adapters.duo import codec as duo_codec
from gateway.core.models import DuoDatum, IndMelding, IndPersoon, IndVerblijf
from gateway.mapping import ind_to_duo
from gateway.mapping.ind_to_duo import (
    bericht_id_for,
    correction_bericht_id,
    to_inburgeraarmelding,
    vertraging_dagen,
)
from gateway.rules import engine as rules
from gateway.wire import xmlsafe

REPO = Path(__file__).resolve().parents[2]
D = dt.date.fromisoformat
UTC = dt.UTC
RECEIVED = dt.datetime(2026, 11, 2, 8, 14, 5, tzinfo=UTC)  # 09:14:05 in Amsterdam


@pytest.fixture(scope="module")
def ruleset():
    return rules.load(REPO / "config" / "rules" / "inburgeringsplicht-2026.1.yaml")


def melding(**changes):
    persoon = IndPersoon(v_nummer="3012345678", geslachtsnaam="Haddad", geboortedatum="1991-00-00",
                         geslacht="V", nationaliteiten=("SYR",), bsn="111222333", voornamen="Rania",
                         gemeentecode="0363")
    verblijf = IndVerblijf(documentnummer="NL4K7TR21", documentsoort="VERBLIJFSVERGUNNING_REGULIER_BEPAALDE_TIJD",
                           verblijfsdoel="GEZINSHERENIGING", wettelijke_grondslag="VW2000_ART8_A",
                           datum_besluit=D("2026-10-28"), ingangsdatum=D("2026-10-15"), einddatum=D("2031-10-15"))
    persoon = dataclasses.replace(persoon, **changes.pop("persoon", {}))
    verblijf = dataclasses.replace(verblijf, **changes.pop("verblijf", {}))
    base = IndMelding(melding_id="6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f", volgnummer=1041, soort_melding="VERLEEND",
                      aangemaakt_op="2026-11-02T09:14:03+01:00", persoon=persoon, verblijf=verblijf)
    return dataclasses.replace(base, **changes)


def translate(ruleset, m, received_at=RECEIVED, termijn=7):
    out = to_inburgeraarmelding(m, received_at=received_at, ruleset=ruleset, leveringstermijn_dagen=termijn)
    xmlsafe.validate(duo_codec.encode_inburgeraarmelding(out), xmlsafe.DUO_XSD)  # always schema-valid
    return out


# ---------------------------------------------------------------- codes and verdicts

@pytest.mark.parametrize("doel", sorted(rules.verblijfsdoel_codes()))
def test_every_purpose_passes_unchanged(ruleset, doel):
    out = translate(ruleset, melding(verblijf={"verblijfsdoel": doel}))
    assert out.verblijf.verblijfsdoel == doel
    assert out.beoordeling.regel == ruleset.evaluate(rules.RuleInput(
        "VW2000_ART8_A", doel, ("SYR",), "1991-00-00", D("2026-10-15"))).regel


@pytest.mark.parametrize("grondslag", sorted(rules.grondslag_codes()))
def test_every_ground_passes_unchanged(ruleset, grondslag):
    unie = "ZAMBRANO" if grondslag == "VW2000_ART8_E" else None
    out = translate(ruleset, melding(verblijf={"wettelijke_grondslag": grondslag, "unierechtelijke_grondslag": unie}))
    assert (out.verblijf.wettelijke_grondslag, out.verblijf.unierechtelijke_grondslag) == (grondslag, unie)


@pytest.mark.parametrize(
    "verblijf, persoon, indicatie, regel",
    [
        ({}, {}, "PLICHTIG", "GEZINSMIGRANT"),
        ({"verblijfsdoel": "ASIEL", "wettelijke_grondslag": "VW2000_ART8_C",
          "documentsoort": "VERBLIJFSVERGUNNING_ASIEL_BEPAALDE_TIJD"}, {}, "PLICHTIG", "ASIELSTATUSHOUDER"),
        ({"verblijfsdoel": "VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND", "wettelijke_grondslag": "VW2000_ART8_E",
          "unierechtelijke_grondslag": "CHAVEZ_VILCHEZ", "documentsoort": "EU_VERBLIJFSDOCUMENT"}, {},
         "NIET_PLICHTIG", "UNIERECHT_ART8E"),
        ({"verblijfsdoel": "STUDIE"}, {}, "NIET_PLICHTIG", "TIJDELIJK_VERBLIJFSDOEL"),
        ({"wettelijke_grondslag": "VW2000_ART8_B"}, {}, "NIET_PLICHTIG", "GRONDSLAG_ZONDER_PLICHT"),
        ({}, {"nationaliteiten": ("SYR", "BEL")}, "NIET_PLICHTIG", "EU_EER_ZWITSERSE_NATIONALITEIT"),
        ({"ingangsdatum": D("2016-01-01")}, {"nationaliteiten": ("TUR",)}, "NIET_PLICHTIG", "TURKSE_NATIONALITEIT"),
        ({}, {"geboortedatum": "0000-00-00"}, "HANDMATIG_BEOORDELEN", "GEBOORTEDATUM_ONVOLLEDIG"),
        ({}, {"geboortedatum": "2010-04-01"}, "NIET_PLICHTIG", "ONDER_MINIMUMLEEFTIJD"),
        ({"verblijfsdoel": "OVERIG"}, {}, "HANDMATIG_BEOORDELEN", "GEEN_REGEL_VAN_TOEPASSING"),
    ],
)
def test_beoordeling(ruleset, verblijf, persoon, indicatie, regel):
    out = translate(ruleset, melding(verblijf=verblijf, persoon=persoon))
    assert (out.beoordeling.plicht_indicatie, out.beoordeling.regel) == (indicatie, regel)
    assert out.beoordeling.regelset_versie == ruleset.version


def test_person_and_source_fields(ruleset):
    out = translate(ruleset, melding(persoon={"voorvoegsel": "el", "gemeentecode": None, "bsn": None}))
    assert out.bron.organisatie == "IND"
    assert (out.bron.melding_id, out.bron.volgnummer, out.bron.aangemaakt_op) == (
        "6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f", 1041, "2026-11-02T09:14:03+01:00")
    p = out.persoon
    assert (p.bsn, p.v_nummer, p.geslachtsnaam, p.voorvoegsel, p.voornamen) == (None, "3012345678", "Haddad", "el", "Rania")
    assert (p.geslacht, p.nationaliteiten, p.gemeentecode) == ("V", ("SYR",), None)
    v = out.verblijf
    assert (v.documentsoort, v.datum_besluit, v.ingangsdatum, v.einddatum) == (
        "VERBLIJFSVERGUNNING_REGULIER_BEPAALDE_TIJD", D("2026-10-28"), D("2026-10-15"), D("2031-10-15"))


# ---------------------------------------------------------------- incomplete birth dates

@pytest.mark.parametrize(
    "geb, datum",
    [
        ("1990-07-14", DuoDatum(1990, 7, 14)),
        ("1990-07-00", DuoDatum(1990, 7)),
        ("1990-00-00", DuoDatum(1990)),
        ("0000-00-00", DuoDatum()),
    ],
)
def test_birth_date_is_split(ruleset, geb, datum):
    assert translate(ruleset, melding(persoon={"geboortedatum": geb})).persoon.geboortedatum == datum


def test_wholly_unknown_birth_date_is_an_empty_element(ruleset):
    el = duo_codec.encode_inburgeraarmelding(translate(ruleset, melding(persoon={"geboortedatum": "0000-00-00"})))
    geboortedatum = el.find(f"{{{duo_codec.DUO_NS}}}persoon/{{{duo_codec.DUO_NS}}}geboortedatum")
    assert geboortedatum is not None and len(geboortedatum) == 0 and not (geboortedatum.text or "").strip()


# ---------------------------------------------------------------- kinds of notification and ids

@pytest.mark.parametrize(
    "soort, duo_soort",
    [("VERLEEND", "NIEUW"), ("GEWIJZIGD", "WIJZIGING"), ("BEEINDIGD", "BEEINDIGING")],
)
def test_kind_of_notification(ruleset, soort, duo_soort):
    out = translate(ruleset, melding(soort_melding=soort))
    assert (out.soort_melding, out.vervangt_bericht_id) == (duo_soort, None)


def test_correction_names_the_berichtid_sent_for_the_corrected_notification(ruleset):
    earlier = melding()
    correction = melding(melding_id="0c8d3e55-1111-4aaa-8bbb-123456789abc", volgnummer=1042,
                         soort_melding="CORRECTIE", correctie_van=earlier.melding_id)
    first = translate(ruleset, earlier)
    out = translate(ruleset, correction)
    assert out.soort_melding == "CORRECTIE"
    assert out.vervangt_bericht_id == first.bericht_id == bericht_id_for(earlier.melding_id)
    assert out.bericht_id == bericht_id_for(correction.melding_id) != first.bericht_id


def test_bericht_id_is_a_deterministic_uuid5():
    one = bericht_id_for("6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f")
    assert one == bericht_id_for("6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f")
    assert uuid.UUID(one).version == 5
    assert one == str(uuid.uuid5(ind_to_duo.NAMESPACE, "ind-melding:6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"))
    assert one != bericht_id_for("6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e70")


def test_correction_bericht_id_depends_on_message_and_rule_set():
    a = correction_bericht_id("4c5173a6-2c2b-536b-a2b0-48a675279fb4", "x@sha256:" + "0" * 64)
    assert a == correction_bericht_id("4c5173a6-2c2b-536b-a2b0-48a675279fb4", "x@sha256:" + "0" * 64)
    assert a != correction_bericht_id("4c5173a6-2c2b-536b-a2b0-48a675279fb4", "x@sha256:" + "1" * 64)
    assert a != correction_bericht_id("00000000-2c2b-536b-a2b0-48a675279fb4", "x@sha256:" + "0" * 64)
    assert uuid.UUID(a).version == 5


# ---------------------------------------------------------------- delivery delay (Europe/Amsterdam)

@pytest.mark.parametrize(
    "datum_besluit, received_at, termijn, expected",
    [
        # 23:30 UTC on 4 November is 00:30 on 5 November in Amsterdam (CET): 8 days after 28 October
        ("2026-10-28", "2026-11-04T23:30:00+00:00", 7, 1),
        ("2026-10-28", "2026-11-04T22:59:59+00:00", 7, 0),  # still 4 November in Amsterdam
        ("2026-10-28", "2026-11-04T23:00:00+00:00", 7, 1),  # midnight in Amsterdam
        # summer time (CEST, +02:00): 22:30 UTC on 1 July is already 2 July
        ("2026-06-24", "2026-07-01T22:30:00+00:00", 7, 1),
        ("2026-06-24", "2026-07-01T21:59:59+00:00", 7, 0),
        # the window boundary: exactly termijn days -> 0, one more -> 1
        ("2026-10-28", "2026-11-04T12:00:00+01:00", 7, 0),
        ("2026-10-28", "2026-11-05T12:00:00+01:00", 7, 1),
        ("2026-10-28", "2026-11-18T12:00:00+01:00", 7, 14),
        ("2026-10-28", "2026-10-28T12:00:00+01:00", 0, 0),
        ("2026-10-28", "2026-10-29T12:00:00+01:00", 0, 1),
        ("2026-10-28", "2026-10-20T12:00:00+01:00", 7, 0),  # before the decision: never negative
    ],
)
def test_vertraging_dagen(datum_besluit, received_at, termijn, expected):
    assert vertraging_dagen(D(datum_besluit), dt.datetime.fromisoformat(received_at), termijn) == expected


def test_delay_and_receipt_time_in_the_message(ruleset):
    received = dt.datetime.fromisoformat("2026-11-04T23:30:00.654321+00:00")
    out = translate(ruleset, melding(), received_at=received, termijn=7)
    assert out.levering.ontvangen_van_bron_op == "2026-11-05T00:30:00+01:00"
    assert (out.levering.leveringstermijn_dagen, out.levering.vertraging_dagen) == (7, 1)
    out = translate(ruleset, melding(), received_at=received, termijn=10)
    assert (out.levering.leveringstermijn_dagen, out.levering.vertraging_dagen) == (10, 0)


def test_naive_receipt_time_is_refused(ruleset):
    with pytest.raises(ValueError):
        to_inburgeraarmelding(melding(), received_at=dt.datetime(2026, 11, 2, 9, 0), ruleset=ruleset)
    with pytest.raises(ValueError):
        vertraging_dagen(D("2026-10-28"), dt.datetime(2026, 11, 2, 9, 0), 7)


def test_malformed_birth_date_error_has_no_value():
    with pytest.raises(ValueError) as info:
        ind_to_duo.split_datum("1990-7-4")
    assert "1990" not in str(info.value)

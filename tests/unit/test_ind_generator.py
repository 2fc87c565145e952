"""The IND notification generator: deterministic, schema-valid, and covering the hard cases."""

from __future__ import annotations

import datetime as dt
import random

from adapters.ind import codec
from adapters.ind.simulator import generate_meldingen, zeep_kwargs
from adapters.testpeople import random_bsn
from gateway.core.bsn import bsn_valid
from gateway.wire import xmlsafe

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def test_same_seed_same_notifications_other_seed_others() -> None:
    assert generate_meldingen(50, seed=7, now=NOW) == generate_meldingen(50, seed=7, now=NOW)
    assert generate_meldingen(50, seed=7, now=NOW) != generate_meldingen(50, seed=8, now=NOW)


def test_every_notification_validates_against_the_ind_xsd() -> None:
    for m in generate_meldingen(300, seed=1, now=NOW):
        xmlsafe.validate(codec.encode_melding(m), xmlsafe.IND_XSD)
        assert codec.business_rules(m) == []


def test_volgnummers_rise_by_one_from_the_start() -> None:
    meldingen = generate_meldingen(20, seed=3, start_volgnummer=1041, now=NOW)
    assert [m.volgnummer for m in meldingen] == list(range(1041, 1061))
    assert len({m.melding_id for m in meldingen}) == 20


def test_bsns_pass_the_11_test_and_some_are_absent() -> None:
    meldingen = generate_meldingen(300, seed=2, now=NOW)
    bsns = [m.persoon.bsn for m in meldingen]
    assert all(bsn_valid(b) for b in bsns if b is not None)
    assert any(b is None for b in bsns)
    rng = random.Random(0)
    assert all(bsn_valid(random_bsn(rng)) for _ in range(1000))


def test_corrections_name_an_earlier_notification() -> None:
    meldingen = generate_meldingen(300, seed=4, now=NOW)
    seen: set[str] = set()
    corrections = 0
    for m in meldingen:
        if m.soort_melding == "CORRECTIE":
            corrections += 1
            assert m.correctie_van in seen
        else:
            assert m.correctie_van is None
        seen.add(m.melding_id)
    assert corrections >= 5


def test_art_8e_parents_of_dutch_children_are_present() -> None:
    meldingen = generate_meldingen(300, seed=5, now=NOW)
    grounds = {m.verblijf.unierechtelijke_grondslag for m in meldingen
               if m.verblijf.wettelijke_grondslag == "VW2000_ART8_E"
               and m.verblijf.verblijfsdoel == "VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND"}
    assert {"ZAMBRANO", "CHAVEZ_VILCHEZ"} <= grounds
    # Union-law grounds appear only with art. 8(e), as the XSD's comment says.
    assert all((m.verblijf.unierechtelijke_grondslag is not None) == (m.verblijf.wettelijke_grondslag == "VW2000_ART8_E")
               for m in meldingen)


def test_variety_incomplete_birth_dates_nationalities_and_late_decisions() -> None:
    meldingen = generate_meldingen(400, seed=6, now=NOW)
    dates = [m.persoon.geboortedatum for m in meldingen]
    assert "0000-00-00" in dates
    assert any(d.endswith("-00-00") and d != "0000-00-00" for d in dates)
    assert any(d.endswith("-00") and not d.endswith("-00-00") for d in dates)
    nationalities = {n for m in meldingen for n in m.persoon.nationaliteiten}
    assert "TUR" in nationalities and nationalities & {"DEU", "POL", "ESP", "ITA"}
    delays = [(NOW.date() - m.verblijf.datum_besluit).days for m in meldingen]
    assert min(delays) >= 1 and any(d >= 10 for d in delays)
    assert {m.soort_melding for m in meldingen} == {"VERLEEND", "GEWIJZIGD", "BEEINDIGD", "CORRECTIE"}


def test_zeep_arguments_leave_out_absent_fields() -> None:
    m = next(m for m in generate_meldingen(100, seed=9, now=NOW) if m.persoon.bsn is None)
    kwargs = zeep_kwargs(m)
    persoon = kwargs["persoon"]
    assert isinstance(persoon, dict) and "bsn" not in persoon and persoon["vNummer"] == m.persoon.v_nummer
    assert kwargs["meldingId"] == m.melding_id

"""Pseudonymization: keyed, consistent, shape- and verdict-preserving."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from lxml import etree

from gateway.archive.pseudonym import Pseudonymizer, load_key
from gateway.core.bsn import bsn_valid
from gateway.rules import engine as rules

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def p() -> Pseudonymizer:
    return Pseudonymizer(KEY)


def test_bsn_keeps_the_11_test_verdict_and_is_consistent(p: Pseudonymizer) -> None:
    for original in ("111222333", "123456782", "999999990"):
        assert bsn_valid(original)
        fake = p.bsn(original)
        assert fake != original and len(fake) == 9 and bsn_valid(fake)
        assert p.bsn(original) == fake
    bad = "123456789"
    assert not bsn_valid(bad) and not bsn_valid(p.bsn(bad))


def test_another_key_gives_other_pseudonyms() -> None:
    assert Pseudonymizer(KEY).bsn("111222333") != Pseudonymizer(KEY[::-1]).bsn("111222333")


def test_v_nummer_names_and_addresses(p: Pseudonymizer) -> None:
    assert len(p.v_nummer("1234567890")) == 10 and p.v_nummer("1234567890").isdigit()
    assert p.surname("Haddad") != "Haddad" and p.surname("Haddad") == p.surname("Haddad")
    first = p.first_names("Rania Meron")
    assert first.split()[0] == p.first_names("Rania") and first.split()[1] == p.first_names("Meron")
    code = p.postcode("3511AB")
    assert code[0] in "123456789" and code[:4].isdigit() and code[4:].isalpha() and code[4:].isupper()
    assert 1 <= int(p.house_number("12")) <= 299
    assert p.street("Kerkstraat") != "Kerkstraat" and p.place("Utrecht") != "Utrecht"


@pytest.mark.parametrize("value", ["1990-00-00", "0000-00-00", "1990-05-00", "1990-05-30", "1990-02-29"])
def test_incomplete_and_late_days_stay(p: Pseudonymizer, value: str) -> None:
    assert p.birth_date(value) == value


def test_birth_day_moves_within_the_month_and_keeps_age_answers(p: Pseudonymizer) -> None:
    # Someone born 2008-03-12 is judged on 2026-03-10 (17) and 2026-03-12 (18, birthday).
    p.learn("2008-03-12", "2026-03-10")
    p.learn("2008-03-12", "2026-03-12")
    fake = p.birth_date("2008-03-12")
    assert fake[:8] == "2008-03-" and 11 <= int(fake[8:]) <= 12
    for on in (dt.date(2026, 3, 10), dt.date(2026, 3, 12)):
        assert rules.has_age(fake, rules.Age(18), on) == rules.has_age("2008-03-12", rules.Age(18), on)


def test_xml_and_json_are_consistent(p: Pseudonymizer) -> None:
    xml = etree.fromstring(b"<d:Debiteur xmlns:d='urn:x'><d:bsn>111222333</d:bsn><d:geslachtsnaam>Haddad"
                           b"</d:geslachtsnaam><d:geboortedatum>1990-05-12</d:geboortedatum><d:adres><d:straat>"
                           b"Kerkstraat</d:straat><d:huisnummer>12</d:huisnummer></d:adres></d:Debiteur>")
    p.xml(xml)
    body = json.loads(p.json_bytes(json.dumps({"debiteur": {"bsn": "111222333", "naam": {"geslachtsnaam": "Haddad"},
                                                            "geboortedatum": "1990-05-12",
                                                            "adres": {"straat": "Kerkstraat", "huisnummer": 12}}})
                                   .encode()))
    d = body["debiteur"]
    assert xml.findtext("{urn:x}bsn") == d["bsn"]
    assert xml.findtext("{urn:x}geslachtsnaam") == d["naam"]["geslachtsnaam"]
    assert xml.findtext("{urn:x}geboortedatum") == d["geboortedatum"]
    assert xml.findtext("{urn:x}adres/{urn:x}straat") == d["adres"]["straat"]
    assert int(xml.findtext("{urn:x}adres/{urn:x}huisnummer")) == d["adres"]["huisnummer"]


def test_duo_split_date_matches_the_full_date(p: Pseudonymizer) -> None:
    el = etree.fromstring(b"<geboortedatum><jaar>1990</jaar><maand>5</maand><dag>12</dag></geboortedatum>")
    p.xml(etree.ElementTree(el).getroot())
    assert f"1990-05-{int(el.findtext('dag')):02d}" == p.birth_date("1990-05-12")


def test_key_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "k").write_bytes(b"short\n")
    with pytest.raises(ValueError):
        load_key(tmp_path / "k")
    (tmp_path / "k").write_bytes(KEY + b"\n")
    assert load_key(tmp_path / "k") == KEY

"""Pseudonymization: keyed, consistent, shape- and verdict-preserving."""

from __future__ import annotations

import datetime as dt
import json
import re

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


@pytest.mark.parametrize("value", ["1990-00-00", "0000-00-00", "1990-05-00", "1990-02-30"])
def test_incomplete_and_impossible_dates_stay(p: Pseudonymizer, value: str) -> None:
    assert p.birth_date(value) == value


@pytest.mark.parametrize("value", ["1990-05-30", "1992-02-29", "1990-01-31", "2008-03-12"])
def test_a_full_birth_date_is_never_kept(p: Pseudonymizer, value: str) -> None:
    fake = p.birth_date(value)
    assert fake != value and dt.date.fromisoformat(fake)
    assert p.birth_date(value) == fake and Pseudonymizer(KEY).birth_date(value) == fake  # keyed, deterministic


def test_birth_date_keeps_age_answers_between_two_boundaries_a_day_apart(p: Pseudonymizer) -> None:
    # Someone born 2008-03-12 is judged on 2026-03-10 (17) and 2026-03-12 (18, birthday): only
    # 2008-03-11 keeps both answers.
    p.learn("2008-03-12", "2026-03-10", "V1")
    p.learn("2008-03-12", "2026-03-12", "V1")
    assert p.birth_date("2008-03-12", "V1") == "2008-03-11"
    # Another person born that day, judged on one of those dates only, gets a date of their own.
    p.learn("2008-03-12", "2026-03-12", "V2")
    other = p.birth_date("2008-03-12", "V2")
    assert other != "2008-03-12" and rules.has_age(other, rules.Age(18), dt.date(2026, 3, 12))


def test_a_birth_date_with_no_room_is_refused_not_kept(p: Pseudonymizer) -> None:
    # Judged the day before and on the 18th birthday and on the 18th birthday of the day after:
    # every other date flips a test; the export stops rather than keep the real date.
    for on in ("2026-03-11", "2026-03-12", "2026-03-13"):
        p.learn("2008-03-12", on, "V1")
    p.learn("2008-03-13", "2026-03-12", "V1")
    with pytest.raises(ValueError, match="cannot be moved"):
        p.birth_date("2008-03-12", "V1")


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
    el = etree.fromstring(b"<persoon><vNummer>1234567890</vNummer><geboortedatum><jaar>1990</jaar><maand>5</maand>"
                          b"<dag>12</dag></geboortedatum></persoon>")
    p.xml(etree.ElementTree(el).getroot())
    date = el.find("geboortedatum")
    assert (f"{int(date.findtext('jaar')):04d}-{int(date.findtext('maand')):02d}-{int(date.findtext('dag')):02d}"
            == p.birth_date("1990-05-12", "1234567890"))


def test_key_file(tmp_path) -> None:
    (tmp_path / "k").write_bytes(b"short\n")
    with pytest.raises(ValueError):
        load_key(tmp_path / "k")
    (tmp_path / "k").write_bytes(KEY + b"\n")
    assert load_key(tmp_path / "k") == KEY


def test_bytes_that_do_not_parse_keep_no_number_or_full_date(p: Pseudonymizer) -> None:
    raw = b"<broken><bsn>111222333</bsn><vNummer>1234567890</vNummer><geboortedatum>1990-05-12</geb"
    out = p.digits(raw)
    assert b"111222333" not in out and b"1234567890" not in out and b"1990-05-12" not in out
    assert re.search(rb"\d{4}-\d\d-\d\d", out) and p.digits(raw) == out

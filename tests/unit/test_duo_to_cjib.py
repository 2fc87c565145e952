"""DUO VorderingOverdracht -> CJIB Vordering: the sample pair, optionals, canonical bytes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from lxml import etree

from adapters.cjib import codec
from gateway.core.models import Adres, Debiteur, VorderingOverdracht
from gateway.mapping.duo_to_cjib import encode_body, to_cjib_vordering
from tests.paths import SAMPLES

NS = {"duo": "urn:nl:duo:inburgering:v1"}


def _text(el: etree._Element, path: str) -> str | None:
    found = el.find(path, NS)
    return None if found is None else found.text


def _required(el: etree._Element, path: str) -> str:
    """The text of an element the contract requires: the sample must have it."""
    text = _text(el, path)
    assert text is not None, path
    return text


def sample_overdracht() -> VorderingOverdracht:
    """The DUO sample, read straight from the contract's file (no codec needed)."""
    root = etree.parse(str(SAMPLES / "duo-vorderingoverdracht.xml")).getroot()
    deb = root.find("duo:debiteur", NS)
    adr = deb.find("duo:adres", NS)
    date = dt.date.fromisoformat
    return VorderingOverdracht(
        vordering_id=_required(root, "duo:vorderingId"),
        soort_vordering=_required(root, "duo:soortVordering"),
        debiteur=Debiteur(
            bsn=_required(deb, "duo:bsn"),
            v_nummer=_text(deb, "duo:vNummer"),
            geslachtsnaam=_required(deb, "duo:geslachtsnaam"),
            voorvoegsel=_text(deb, "duo:voorvoegsel"),
            voornamen=_text(deb, "duo:voornamen"),
            geboortedatum=date(_required(deb, "duo:geboortedatum")),
            adres=Adres(
                straat=_required(adr, "duo:straat"),
                huisnummer=int(_required(adr, "duo:huisnummer")),
                huisnummertoevoeging=_text(adr, "duo:huisnummertoevoeging"),
                postcode=_required(adr, "duo:postcode"),
                woonplaats=_required(adr, "duo:woonplaats"),
            ),
        ),
        bedrag_in_centen=int(_required(root, "duo:bedragInCenten")),
        beschikking_kenmerk=_required(root, "duo:beschikking/duo:kenmerk"),
        beschikking_datum=date(_required(root, "duo:beschikking/duo:datum")),
        beschikking_grondslag=_required(root, "duo:beschikking/duo:wettelijkeGrondslag"),
        vervaldatum=date(_required(root, "duo:vervaldatum")),
        aanmaning_verzonden_op=date(_required(root, "duo:aanmaningVerzondenOp")),
    )


def _debiteur(d: dict[str, object]) -> dict[str, Any]:
    """The mapped ``debiteur`` object (a JSON object, so a dict)."""
    debiteur = d["debiteur"]
    assert isinstance(debiteur, dict)
    return debiteur


def test_sample_maps_to_the_sample_cjib_vordering() -> None:
    expected = json.loads((SAMPLES / "cjib-vordering.json").read_text(encoding="utf-8"))
    assert to_cjib_vordering(sample_overdracht()) == expected


def test_mapped_sample_fits_the_openapi_schema() -> None:
    body = encode_body(to_cjib_vordering(sample_overdracht()))
    assert codec.decode_vordering(body)["opdrachtgeverReferentie"] == "c41d8a2e-6f0b-4a7c-9e13-5b2f8d6a0c94"


def test_absent_optionals_are_omitted() -> None:
    v = sample_overdracht()
    bare = dataclasses.replace(
        v, debiteur=dataclasses.replace(v.debiteur, voornamen=None, voorvoegsel=None, v_nummer=None,
                                        adres=dataclasses.replace(v.debiteur.adres, huisnummertoevoeging=None)))
    d = to_cjib_vordering(bare)
    assert _debiteur(d)["naam"] == {"geslachtsnaam": "Tesfaye"}
    assert "huisnummertoevoeging" not in _debiteur(d)["adres"]
    codec.validate("Vordering", d)


def test_voorvoegsel_is_carried_and_vnummer_is_not() -> None:
    v = sample_overdracht()
    d = to_cjib_vordering(dataclasses.replace(v, debiteur=dataclasses.replace(v.debiteur, voorvoegsel="van der")))
    assert _debiteur(d)["naam"] == {"geslachtsnaam": "Tesfaye", "voorvoegsel": "van der", "voornamen": "Meron"}
    assert "vNummer" not in json.dumps(d)


def test_encode_body_is_canonical_and_deterministic() -> None:
    d = to_cjib_vordering(sample_overdracht())
    shuffled = json.loads(json.dumps(d, sort_keys=False))
    reordered = dict(reversed(list(shuffled.items())))
    body = encode_body(d)
    assert body == encode_body(reordered) == encode_body(to_cjib_vordering(sample_overdracht()))
    assert body.startswith(b'{"aanmaningsdatum":"2026-09-01","bedrag":{"centen":34000,"valuta":"EUR"}')
    assert b" " not in body.replace(b"Kanaalweg", b"")  # no insignificant whitespace
    assert json.loads(body) == d


@pytest.mark.parametrize("name", ["Çelik", "Ñúñez", "Đorđević"])
def test_non_ascii_is_written_as_utf8(name: str) -> None:
    v = sample_overdracht()
    d = to_cjib_vordering(dataclasses.replace(v, debiteur=dataclasses.replace(v.debiteur, geslachtsnaam=name)))
    body = encode_body(d)
    assert name.encode("utf-8") in body and b"\\u" not in body

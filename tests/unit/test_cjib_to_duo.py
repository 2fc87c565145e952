"""CJIB answers and status changes -> DUO VorderingStatus."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from adapters.cjib import codec
from gateway.core.errors import SchemaInvalid
from gateway.core.models import CjibOntvangst, CjibStatuswijziging, Fout
from gateway.mapping.cjib_to_duo import (
    feed_key,
    from_ontvangst,
    from_refusal,
    from_statuswijziging,
    status_bericht_id,
    status_code,
)

VID = "c41d8a2e-6f0b-4a7c-9e13-5b2f8d6a0c94"
PEIL = "2026-11-28T23:00:00+01:00"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.parametrize(("cjib", "duo"), [
    ("IN_BEHANDELING", "IN_BEHANDELING_BIJ_CJIB"),
    ("AFGEWEZEN", "AFGEWEZEN_DOOR_CJIB"),
    ("DWANGBEVEL_UITGEVAARDIGD", "DWANGBEVEL_UITGEVAARDIGD"),
    ("GEDEELTELIJK_BETAALD", "GEDEELTELIJK_BETAALD"),
    ("VOLDAAN", "VOLDAAN"),
    ("OPGESCHORT", "OPGESCHORT"),
    ("ONINBAAR", "ONINBAAR"),
])
def test_status_code(cjib: str, duo: str) -> None:
    assert status_code(cjib) == duo


def test_bericht_id_is_a_deterministic_uuid5_per_event() -> None:
    ids = {status_bericht_id(VID, k) for k in ("accepted", "refused", feed_key(1), feed_key(2))}
    assert len(ids) == 4
    assert all(UUID_RE.match(i) and uuid.UUID(i).version == 5 for i in ids)
    assert status_bericht_id(VID, "accepted") == status_bericht_id(VID, "accepted")
    assert status_bericht_id(VID, "accepted") != status_bericht_id(str(uuid.uuid4()), "accepted")
    assert feed_key(7) == "cjib-volgnummer:7"


def test_bericht_id_is_stable_across_releases() -> None:
    # Pinned: a change would make DUO take old events for new messages.
    assert status_bericht_id(VID, "accepted") == "8e5f1b55-0677-5de0-aa94-d9896f69da40"


def test_from_ontvangst() -> None:
    o = CjibOntvangst(zaaknummer="CJIB-2026-000001", opdrachtgever_referentie=VID, status="IN_BEHANDELING",
                      ontvangen_op=PEIL, payload_digest="x" * 43)
    s = from_ontvangst(VID, o, PEIL)
    assert (s.vordering_id, s.status, s.cjib_zaaknummer, s.peilmoment) == (
        VID, "IN_BEHANDELING_BIJ_CJIB", "CJIB-2026-000001", PEIL)
    assert s.bericht_id == status_bericht_id(VID, "accepted")
    assert s.fouten == ()


def test_from_statuswijziging() -> None:
    w = CjibStatuswijziging(volgnummer=42, zaaknummer="CJIB-2026-000001", opdrachtgever_referentie=VID,
                            status="GEDEELTELIJK_BETAALD", openstaand_centen=17000, tijdstip=PEIL,
                            redenen=(Fout("REGELING", "Betalingsregeling getroffen."),))
    s = from_statuswijziging(w)
    assert s.bericht_id == status_bericht_id(VID, "cjib-volgnummer:42")
    assert (s.vordering_id, s.status, s.cjib_zaaknummer, s.openstaand_bedrag_in_centen, s.peilmoment) == (
        VID, "GEDEELTELIJK_BETAALD", "CJIB-2026-000001", 17000, PEIL)
    assert s.fouten == (Fout("REGELING", "Betalingsregeling getroffen."),)
    assert from_statuswijziging(w) == s  # the same feed entry read twice is the same message


def test_from_statuswijziging_renames_in_behandeling() -> None:
    w = CjibStatuswijziging(1, "CJIB-2026-000001", VID, "IN_BEHANDELING", 34000, PEIL)
    assert from_statuswijziging(w).status == "IN_BEHANDELING_BIJ_CJIB"


def test_from_refusal_maps_each_error() -> None:
    errors = [
        {"code": "BSN_ELFPROEF", "pointer": "/debiteur/bsn", "omschrijving": "Het bsn voldoet niet."},
        {"code": "AANMANING_TE_RECENT", "pointer": "/aanmaningsdatum", "omschrijving": "Te recent."},
    ]
    s = from_refusal(VID, errors, PEIL)
    assert s.status == "AFGEWEZEN_DOOR_CJIB"
    assert s.bericht_id == status_bericht_id(VID, "refused")
    assert s.cjib_zaaknummer is None
    assert s.fouten == (Fout("BSN_ELFPROEF", "Het bsn voldoet niet.", pad="/debiteur/bsn"),
                        Fout("AANMANING_TE_RECENT", "Te recent.", pad="/aanmaningsdatum"))


def test_from_refusal_makes_codes_and_texts_fit_duo_schema() -> None:
    s = from_refusal(VID, [{"code": "bad-code!", "pointer": "", "omschrijving": ""}, {}], PEIL)
    assert [f.code for f in s.fouten] == ["CJIB_BAD_CODE_", "CJIB_FOUT"]
    assert all(re.fullmatch(r"[A-Z0-9_]{1,80}", f.code) and f.omschrijving and f.pad is None for f in s.fouten)


# ---------------------------------------------------------------- adapters.cjib.codec (pure)

CHANGE = {"volgnummer": 3, "zaaknummer": "CJIB-2026-000001", "opdrachtgeverReferentie": VID,
          "status": "OPGESCHORT", "openstaandCenten": 100, "tijdstip": PEIL,
          "redenen": [{"code": "BEZWAAR", "omschrijving": "Bezwaar ingediend."}]}
PAGE = {
    "wijzigingen": [CHANGE],
    "volgendeCursor": "abc",
    "meer": False,
}


def test_decode_statuspagina_and_map() -> None:
    page = codec.decode_statuspagina(json.dumps(PAGE).encode())
    assert (page.volgende_cursor, page.meer, len(page.wijzigingen)) == ("abc", False, 1)
    s = from_statuswijziging(page.wijzigingen[0])
    assert s.status == "OPGESCHORT" and s.fouten == (Fout("BEZWAAR", "Bezwaar ingediend."),)


def test_decode_ontvangst() -> None:
    body = json.dumps({"zaaknummer": "CJIB-2026-000001", "opdrachtgeverReferentie": VID, "status": "IN_BEHANDELING",
                       "ontvangenOp": PEIL, "payloadDigest": "a" * 43}).encode()
    o = codec.decode_ontvangst(body)
    assert (o.zaaknummer, o.opdrachtgever_referentie, o.payload_digest) == ("CJIB-2026-000001", VID, "a" * 43)


@pytest.mark.parametrize(("body", "path"), [
    (b"not json", None),
    (b"\xff\xfe", None),
    (json.dumps({**PAGE, "meer": "ja"}).encode(), "/meer"),
    (json.dumps({**PAGE, "extra": 1}).encode(), "/"),
    (json.dumps({**PAGE, "wijzigingen": [{**CHANGE, "zaaknummer": "X-1"}]}).encode(),
     "/wijzigingen/0/zaaknummer"),
    (json.dumps({**PAGE, "wijzigingen": [{**CHANGE, "tijdstip": "gisteren"}]}).encode(),
     "/wijzigingen/0/tijdstip"),
])
def test_bad_bodies_raise_schema_invalid(body: bytes, path: str | None) -> None:
    with pytest.raises(SchemaInvalid) as info:
        codec.decode_statuspagina(body)
    assert info.value.path == path and info.value.partner == "cjib"
    assert "X-1" not in str(info.value) and "gisteren" not in str(info.value)  # no values in messages


def test_decode_problem_always_has_errors() -> None:
    assert codec.decode_problem(b'{"type":"t","title":"t","status":401}')["errors"] == []
    with pytest.raises(SchemaInvalid):
        codec.decode_problem(b'{"title":"t"}')

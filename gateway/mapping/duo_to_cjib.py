"""DUO ``VorderingOverdracht`` -> CJIB ``Vordering`` JSON (pure).

``encode_body`` fixes the byte form: CJIB compares bodies to decide whether a repeated
``Idempotency-Key`` is the same request (201 again) or another one (422). The same claim must
therefore always give the same bytes, whatever order the dict was built in and whichever
Python produced it. The form is: keys sorted, no insignificant whitespace (``,`` and ``:``),
non-ASCII characters written as themselves (not ``\\uXXXX``), UTF-8, no trailing newline.
"""

from __future__ import annotations

import json

from gateway.core.models import Debiteur, VorderingOverdracht

__all__ = ["to_cjib_vordering", "encode_body"]


def to_cjib_vordering(v: VorderingOverdracht) -> dict[str, object]:
    """The CJIB ``Vordering`` for one DUO hand-over; absent optionals are omitted."""
    return {
        "opdrachtgeverReferentie": v.vordering_id,
        "soort": v.soort_vordering,
        "debiteur": _debiteur(v.debiteur),
        "bedrag": {"valuta": "EUR", "centen": v.bedrag_in_centen},
        "grondslag": {
            "beschikkingskenmerk": v.beschikking_kenmerk,
            "beschikkingsdatum": v.beschikking_datum.isoformat(),
            "wettelijkeGrondslag": v.beschikking_grondslag,
        },
        "vervaldatum": v.vervaldatum.isoformat(),
        "aanmaningsdatum": v.aanmaning_verzonden_op.isoformat(),
    }


def encode_body(d: dict[str, object]) -> bytes:
    """The canonical request body bytes (see the module docstring)."""
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _debiteur(d: Debiteur) -> dict[str, object]:
    # vNummer has no place in CJIB's schema (additionalProperties: false), so it is dropped.
    naam = _optional({"geslachtsnaam": d.geslachtsnaam, "voorvoegsel": d.voorvoegsel,
                      "voornamen": d.voornamen})
    adres = _optional({
        "straat": d.adres.straat,
        "huisnummer": d.adres.huisnummer,
        "huisnummertoevoeging": d.adres.huisnummertoevoeging,
        "postcode": d.adres.postcode,
        "woonplaats": d.adres.woonplaats,
    })
    return {"bsn": d.bsn, "naam": naam, "geboortedatum": d.geboortedatum.isoformat(), "adres": adres}


def _optional(d: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in d.items() if v is not None}

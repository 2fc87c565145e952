"""What each route turns an accepted message into: the outbound payloads, signed once.

Route names: ``ind-duo`` (IND notification -> DUO InburgeraarMelding), ``duo-cjib`` (DUO claim
-> CJIB Vordering, then VorderingStatus back to DUO), ``cjib-duo`` (a CJIB status change ->
DUO VorderingStatus), ``rules-duo`` (a correction after a rule-set change).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from lxml import etree

from adapters.duo import codec as duo_codec
from gateway.core.models import InburgeraarMelding, IndMelding
from gateway.core.store import NewDelivery
from gateway.mapping import ind_to_duo
from gateway.runtime import Runtime
from gateway.wire import xmlsafe

__all__ = ["sign_duo", "inburgeraarmelding_delivery", "melding_facts", "melding_person"]


def sign_duo(rt: Runtime, element: etree._Element) -> bytes:
    """Validate a DUO message against the DUO XSD, then sign it (enveloped) when security is on."""
    xmlsafe.validate(element, xmlsafe.DUO_XSD, partner="duo")
    if rt.own is None:
        return etree.tostring(element, xml_declaration=True, encoding="utf-8")
    from gateway.security import xmldsig

    return xmldsig.sign_enveloped(element, rt.own)


def inburgeraarmelding_delivery(rt: Runtime, melding: IndMelding, received_at: dt.datetime,
                                ruleset: Any | None = None) -> tuple[InburgeraarMelding, NewDelivery]:
    duo = ind_to_duo.to_inburgeraarmelding(
        melding, received_at=received_at, ruleset=ruleset or rt.ruleset,
        leveringstermijn_dagen=rt.config.ind.leveringstermijn_dagen)
    payload = sign_duo(rt, duo_codec.encode_inburgeraarmelding(duo))
    return duo, NewDelivery(partner="duo", operation="InburgeraarMelding", idempotency_key=duo.bericht_id,
                            payload=payload)


def melding_facts(melding: IndMelding, duo: InburgeraarMelding) -> dict[str, Any]:
    """What operators and reports may see without personal data."""
    return {
        "meldingId": melding.melding_id,
        "volgnummer": melding.volgnummer,
        "soortMelding": melding.soort_melding,
        "correctieVan": melding.correctie_van,
        "verblijfsdoel": melding.verblijf.verblijfsdoel,
        "wettelijkeGrondslag": melding.verblijf.wettelijke_grondslag,
        "unierechtelijkeGrondslag": melding.verblijf.unierechtelijke_grondslag,
        "datumBesluit": melding.verblijf.datum_besluit.isoformat(),
        "ingangsdatum": melding.verblijf.ingangsdatum.isoformat(),
        "berichtId": duo.bericht_id,
        "plichtIndicatie": duo.beoordeling.plicht_indicatie,
        "regel": duo.beoordeling.regel,
        "regelsetVersie": duo.beoordeling.regelset_versie,
        "vertragingDagen": duo.levering.vertraging_dagen,
        "leveringstermijnDagen": duo.levering.leveringstermijn_dagen,
    }


def melding_person(melding: IndMelding) -> dict[str, Any]:
    p = melding.persoon
    return {
        "bsn": p.bsn,
        "vNummer": p.v_nummer,
        "naam": " ".join(x for x in (p.voornamen, p.voorvoegsel, p.geslachtsnaam) if x),
        "geboortedatum": p.geboortedatum,
        "nationaliteit": list(p.nationaliteiten),
    }

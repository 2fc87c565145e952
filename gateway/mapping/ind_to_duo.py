"""IND ``VergunningMelding`` -> DUO ``InburgeraarMelding`` (pure; mapping notes in the contracts README).

Identifiers are derived, not drawn: the berichtId of a notification is a UUIDv5 of its meldingId,
so a replay, a retry after a crash or a catch-up through HaalMeldingen yields the same berichtId,
and a CORRECTIE can name the berichtId of the notification it corrects without a lookup.
"""

from __future__ import annotations

import datetime as dt
import uuid

from gateway.core.clock import AMS, iso
from gateway.core.models import (
    Beoordeling,
    DuoBron,
    DuoDatum,
    DuoPersoon,
    DuoVerblijf,
    InburgeraarMelding,
    IndMelding,
    Levering,
)
from gateway.rules.engine import BIRTH_RE, RuleInput, RuleSet

__all__ = [
    "NAMESPACE",
    "SOORT_MELDING",
    "bericht_id_for",
    "correction_bericht_id",
    "split_datum",
    "to_inburgeraarmelding",
    "vertraging_dagen",
]

#: The project's UUIDv5 namespace. Never change it: every berichtId ever sent depends on it.
NAMESPACE = uuid.UUID("29daf107-d2bb-40a8-83e8-1d4705fbf8f3")

SOORT_MELDING = {
    "VERLEEND": "NIEUW",
    "GEWIJZIGD": "WIJZIGING",
    "BEEINDIGD": "BEEINDIGING",
    "CORRECTIE": "CORRECTIE",
}


def bericht_id_for(melding_id: str) -> str:
    """The berichtId the gateway sends to DUO for the IND notification ``melding_id``."""
    return str(uuid.uuid5(NAMESPACE, "ind-melding:" + melding_id))


def correction_bericht_id(earlier_bericht_id: str, regelset_versie: str) -> str:
    """The berichtId of a CORRECTIE that re-sends ``earlier_bericht_id`` assessed by another rule set.

    Deterministic, so re-running the same re-assessment does not send a second correction.
    """
    return str(uuid.uuid5(NAMESPACE, f"correctie:{earlier_bericht_id}:{regelset_versie}"))


def vertraging_dagen(datum_besluit: dt.date, received_at: dt.datetime, termijn: int) -> int:
    """Days beyond the delivery window; the day of storing is a calendar day in Europe/Amsterdam."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must carry a time zone")
    stored_on = received_at.astimezone(AMS).date()
    return max(0, (stored_on - datum_besluit).days - termijn)


def split_datum(geboortedatum: str) -> DuoDatum:
    """IND ``YYYY-MM-DD`` with 00 for unknown parts -> DUO's split date with only the known parts."""
    found = BIRTH_RE.fullmatch(geboortedatum)
    if found is None:
        raise ValueError("geboortedatum is not YYYY-MM-DD")  # no value: it is personal data
    jaar, maand, dag = (int(part) for part in found.groups())
    return DuoDatum(jaar=jaar or None, maand=maand or None, dag=dag or None)


def to_inburgeraarmelding(m: IndMelding, *, received_at: dt.datetime, ruleset: RuleSet,
                          leveringstermijn_dagen: int = 7) -> InburgeraarMelding:
    """Translate one IND notification, with the rule set's pre-assessment and the delivery delay."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must carry a time zone")
    p, v = m.persoon, m.verblijf
    verdict = ruleset.evaluate(RuleInput(
        wettelijke_grondslag=v.wettelijke_grondslag,
        verblijfsdoel=v.verblijfsdoel,
        nationaliteiten=p.nationaliteiten,
        geboortedatum=p.geboortedatum,
        ingangsdatum=v.ingangsdatum,
    ))
    return InburgeraarMelding(
        bericht_id=bericht_id_for(m.melding_id),
        bron=DuoBron(organisatie="IND", melding_id=m.melding_id, volgnummer=m.volgnummer,
                     aangemaakt_op=m.aangemaakt_op),
        soort_melding=SOORT_MELDING[m.soort_melding],
        vervangt_bericht_id=_vervangt(m),
        persoon=DuoPersoon(
            bsn=p.bsn, v_nummer=p.v_nummer, geslachtsnaam=p.geslachtsnaam, voorvoegsel=p.voorvoegsel,
            voornamen=p.voornamen, geboortedatum=split_datum(p.geboortedatum), geslacht=p.geslacht,
            nationaliteiten=p.nationaliteiten, gemeentecode=p.gemeentecode,
        ),
        verblijf=DuoVerblijf(
            documentsoort=v.documentsoort, verblijfsdoel=v.verblijfsdoel,
            wettelijke_grondslag=v.wettelijke_grondslag, unierechtelijke_grondslag=v.unierechtelijke_grondslag,
            datum_besluit=v.datum_besluit, ingangsdatum=v.ingangsdatum, einddatum=v.einddatum,
        ),
        beoordeling=Beoordeling(plicht_indicatie=verdict.plicht_indicatie, regel=verdict.regel,
                                regelset_versie=ruleset.version),
        levering=Levering(
            ontvangen_van_bron_op=iso(received_at),
            leveringstermijn_dagen=leveringstermijn_dagen,
            vertraging_dagen=vertraging_dagen(v.datum_besluit, received_at, leveringstermijn_dagen),
        ),
    )


def _vervangt(m: IndMelding) -> str | None:
    # A DUO CORRECTIE names the berichtId we sent for the IND notification it corrects.
    if m.soort_melding == "CORRECTIE" and m.correctie_van:
        return bericht_id_for(m.correctie_van)
    return None

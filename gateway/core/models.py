"""Plain data for every message the gateway carries.

Codecs (``adapters/<partner>/codec.py``) turn bytes into these and back; the mapping
functions (``gateway/mapping/``) turn one partner's model into another's. Nothing here does I/O.
Dates that the contract gives as ``xs:date`` are ``datetime.date``; timestamps with a zone are
kept as the exact lexical string received (``str``), so that a message can be reproduced
byte for byte; ``datetime`` values are only made where a computation needs one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

__all__ = [
    "IndPersoon",
    "IndVerblijf",
    "IndMelding",
    "IndFeedPage",
    "DuoDatum",
    "DuoPersoon",
    "DuoVerblijf",
    "Beoordeling",
    "Levering",
    "DuoBron",
    "InburgeraarMelding",
    "Fout",
    "DuoOntvangstbevestiging",
    "Adres",
    "Debiteur",
    "VorderingOverdracht",
    "VorderingStatus",
    "CjibVordering",
    "CjibOntvangst",
    "CjibStatuswijziging",
    "CjibStatusPagina",
]


# ---------------------------------------------------------------- IND (ind-wus)

@dataclass(frozen=True)
class IndPersoon:
    v_nummer: str
    geslachtsnaam: str
    #: ``YYYY-MM-DD`` where MM and DD may be ``00`` (unknown); ``0000-00-00`` wholly unknown.
    geboortedatum: str
    geslacht: str
    nationaliteiten: tuple[str, ...]
    bsn: str | None = None
    voorvoegsel: str | None = None
    voornamen: str | None = None
    gemeentecode: str | None = None


@dataclass(frozen=True)
class IndVerblijf:
    documentnummer: str
    documentsoort: str
    verblijfsdoel: str
    wettelijke_grondslag: str
    datum_besluit: dt.date
    ingangsdatum: dt.date
    unierechtelijke_grondslag: str | None = None
    einddatum: dt.date | None = None


@dataclass(frozen=True)
class IndMelding:
    """One ``ind:VergunningMelding``."""

    melding_id: str
    volgnummer: int
    soort_melding: str  # VERLEEND | GEWIJZIGD | BEEINDIGD | CORRECTIE
    aangemaakt_op: str  # lexical xs:dateTime with zone
    persoon: IndPersoon
    verblijf: IndVerblijf
    correctie_van: str | None = None


@dataclass(frozen=True)
class IndFeedPage:
    """``ind:HaalMeldingenAntwoord``: the notifications as raw element bytes, plus the head."""

    meldingen: tuple[bytes, ...]
    laatste_volgnummer: int


# ---------------------------------------------------------------- DUO (duo-xml)

@dataclass(frozen=True)
class DuoDatum:
    """DUO's split date: only the known parts are present."""

    jaar: int | None = None
    maand: int | None = None
    dag: int | None = None


@dataclass(frozen=True)
class DuoPersoon:
    v_nummer: str
    geslachtsnaam: str
    geboortedatum: DuoDatum
    geslacht: str
    nationaliteiten: tuple[str, ...]
    bsn: str | None = None
    voorvoegsel: str | None = None
    voornamen: str | None = None
    gemeentecode: str | None = None


@dataclass(frozen=True)
class DuoVerblijf:
    documentsoort: str
    verblijfsdoel: str
    wettelijke_grondslag: str
    datum_besluit: dt.date
    ingangsdatum: dt.date
    unierechtelijke_grondslag: str | None = None
    einddatum: dt.date | None = None


@dataclass(frozen=True)
class Beoordeling:
    plicht_indicatie: str  # PLICHTIG | NIET_PLICHTIG | HANDMATIG_BEOORDELEN
    regel: str
    regelset_versie: str  # name@sha256:hex


@dataclass(frozen=True)
class Levering:
    ontvangen_van_bron_op: str  # lexical xs:dateTime with zone
    leveringstermijn_dagen: int
    vertraging_dagen: int


@dataclass(frozen=True)
class DuoBron:
    organisatie: str
    melding_id: str
    volgnummer: int
    aangemaakt_op: str


@dataclass(frozen=True)
class InburgeraarMelding:
    bericht_id: str
    bron: DuoBron
    soort_melding: str  # NIEUW | WIJZIGING | BEEINDIGING | CORRECTIE
    persoon: DuoPersoon
    verblijf: DuoVerblijf
    beoordeling: Beoordeling
    levering: Levering
    vervangt_bericht_id: str | None = None


@dataclass(frozen=True)
class Fout:
    code: str
    omschrijving: str
    pad: str | None = None


@dataclass(frozen=True)
class DuoOntvangstbevestiging:
    bericht_id: str
    status: str  # ONTVANGEN | AFGEWEZEN
    ontvangen_op: str
    bericht_digest: str
    kenmerk: str | None = None
    fouten: tuple[Fout, ...] = ()


@dataclass(frozen=True)
class Adres:
    straat: str
    huisnummer: int
    postcode: str
    woonplaats: str
    huisnummertoevoeging: str | None = None


@dataclass(frozen=True)
class Debiteur:
    bsn: str
    geslachtsnaam: str
    geboortedatum: dt.date
    adres: Adres
    v_nummer: str | None = None
    voorvoegsel: str | None = None
    voornamen: str | None = None


@dataclass(frozen=True)
class VorderingOverdracht:
    vordering_id: str
    soort_vordering: str
    debiteur: Debiteur
    bedrag_in_centen: int
    beschikking_kenmerk: str
    beschikking_datum: dt.date
    beschikking_grondslag: str
    vervaldatum: dt.date
    aanmaning_verzonden_op: dt.date


@dataclass(frozen=True)
class VorderingStatus:
    bericht_id: str
    vordering_id: str
    status: str
    peilmoment: str
    cjib_zaaknummer: str | None = None
    openstaand_bedrag_in_centen: int | None = None
    fouten: tuple[Fout, ...] = ()


# ---------------------------------------------------------------- CJIB (cjib-rest)

@dataclass(frozen=True)
class CjibVordering:
    """The JSON body of ``POST /v1/vorderingen``, as a dict ready for ``json.dumps``."""

    body: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class CjibOntvangst:
    zaaknummer: str
    opdrachtgever_referentie: str
    status: str
    ontvangen_op: str
    payload_digest: str


@dataclass(frozen=True)
class CjibStatuswijziging:
    volgnummer: int
    zaaknummer: str
    opdrachtgever_referentie: str
    status: str
    openstaand_centen: int
    tijdstip: str
    redenen: tuple[Fout, ...] = ()


@dataclass(frozen=True)
class CjibStatusPagina:
    wijzigingen: tuple[CjibStatuswijziging, ...]
    volgende_cursor: str
    meer: bool

"""DUO codec (profile duo-xml): ``duo:*`` elements <-> ``gateway.core.models``. Pure: no I/O, no clock.

Encoders produce unsigned, schema-valid elements with the ``duo`` prefix in the XSD's element
order; the enveloped signature is added afterwards (``gateway.security.xmldsig``). Decoders
expect schema-valid elements and ignore a trailing ``ds:Signature``.
"""

from __future__ import annotations

import datetime as dt

from lxml import etree

from gateway.core.bsn import bsn_valid
from gateway.core.models import (
    Adres,
    Beoordeling,
    Debiteur,
    DuoBron,
    DuoDatum,
    DuoOntvangstbevestiging,
    DuoPersoon,
    DuoVerblijf,
    Fout,
    InburgeraarMelding,
    Levering,
    VorderingOverdracht,
    VorderingStatus,
)
from gateway.wire.xmlcodec import Vocabulary, parse_date

__all__ = [
    "DUO_NS",
    "encode_inburgeraarmelding",
    "decode_inburgeraarmelding",
    "encode_ontvangstbevestiging",
    "decode_ontvangstbevestiging",
    "encode_vorderingoverdracht",
    "decode_vorderingoverdracht",
    "encode_vorderingstatus",
    "decode_vorderingstatus",
    "vordering_rules",
    "AANMANINGSTERMIJN_DAGEN",
]

DUO_NS = "urn:nl:duo:inburgering:v1"
NSMAP = {"duo": DUO_NS}
#: CJIB requires the last reminder at least this many days before the hand-over day.
AANMANINGSTERMIJN_DAGEN = 14


# ---------------------------------------------------------------- helpers

_X = Vocabulary(DUO_NS, "duo")
_q = _X.q
_root = _X.root
_add = _X.add
_add_opt = _X.add_opt
_expect = _X.expect
_child = _X.child
_text = _X.text
_opt_text = _X.opt_text
_sub = _X.sub
_opt_int = _X.opt_int
_date = parse_date
_values_hidden = _X.values_hidden


def _encode_fouten(parent: etree._Element, fouten: tuple[Fout, ...]) -> None:
    for fout in fouten:
        el = _sub(parent, "fout")
        _add(el, "code", fout.code)
        _add(el, "omschrijving", fout.omschrijving)
        _add_opt(el, "pad", fout.pad)


def _decode_fouten(parent: etree._Element) -> tuple[Fout, ...]:
    return tuple(
        Fout(code=_text(el, "code"), omschrijving=_text(el, "omschrijving"), pad=_opt_text(el, "pad"))
        for el in parent.findall(_q("fout"))
    )


# ---------------------------------------------------------------- InburgeraarMelding

def encode_inburgeraarmelding(m: InburgeraarMelding) -> etree._Element:
    """InburgeraarMelding -> unsigned ``duo:InburgeraarMelding``."""
    root = _root("InburgeraarMelding")
    _add(root, "berichtId", m.bericht_id)
    bron = _sub(root, "bron")
    _add(bron, "organisatie", m.bron.organisatie)
    _add(bron, "meldingId", m.bron.melding_id)
    _add(bron, "volgnummer", m.bron.volgnummer)
    _add(bron, "aangemaaktOp", m.bron.aangemaakt_op)
    _add(root, "soortMelding", m.soort_melding)
    _add_opt(root, "vervangtBerichtId", m.vervangt_bericht_id)
    _encode_persoon(_sub(root, "persoon"), m.persoon)
    _encode_verblijf(_sub(root, "verblijf"), m.verblijf)
    beoordeling = _sub(root, "beoordeling")
    _add(beoordeling, "plichtIndicatie", m.beoordeling.plicht_indicatie)
    _add(beoordeling, "regel", m.beoordeling.regel)
    _add(beoordeling, "regelsetVersie", m.beoordeling.regelset_versie)
    levering = _sub(root, "levering")
    _add(levering, "ontvangenVanBronOp", m.levering.ontvangen_van_bron_op)
    _add(levering, "leveringstermijnDagen", m.levering.leveringstermijn_dagen)
    _add(levering, "vertragingDagen", m.levering.vertraging_dagen)
    return root


def _encode_persoon(el: etree._Element, p: DuoPersoon) -> None:
    _add_opt(el, "bsn", p.bsn)
    _add(el, "vNummer", p.v_nummer)
    naam = _sub(el, "naam")
    _add(naam, "geslachtsnaam", p.geslachtsnaam)
    _add_opt(naam, "voorvoegsel", p.voorvoegsel)
    _add_opt(naam, "voornamen", p.voornamen)
    datum = _sub(el, "geboortedatum")  # stays empty when the birth date is wholly unknown
    if p.geboortedatum.jaar is not None:
        _add(datum, "jaar", f"{p.geboortedatum.jaar:04d}")  # xs:gYear needs four digits
    _add_opt(datum, "maand", p.geboortedatum.maand)
    _add_opt(datum, "dag", p.geboortedatum.dag)
    _add(el, "geslacht", p.geslacht)
    for code in p.nationaliteiten:
        _add(el, "nationaliteit", code)
    _add_opt(el, "gemeentecode", p.gemeentecode)


def _encode_verblijf(el: etree._Element, v: DuoVerblijf) -> None:
    _add(el, "documentsoort", v.documentsoort)
    _add(el, "verblijfsdoel", v.verblijfsdoel)
    _add(el, "wettelijkeGrondslag", v.wettelijke_grondslag)
    _add_opt(el, "unierechtelijkeGrondslag", v.unierechtelijke_grondslag)
    _add(el, "datumBesluit", v.datum_besluit)
    _add(el, "ingangsdatum", v.ingangsdatum)
    _add_opt(el, "einddatum", v.einddatum)


@_values_hidden
def decode_inburgeraarmelding(el: etree._Element) -> InburgeraarMelding:
    _expect(el, "InburgeraarMelding")
    bron = _child(el, "bron")
    beoordeling = _child(el, "beoordeling")
    levering = _child(el, "levering")
    return InburgeraarMelding(
        bericht_id=_text(el, "berichtId"),
        bron=DuoBron(
            organisatie=_text(bron, "organisatie"),
            melding_id=_text(bron, "meldingId"),
            volgnummer=int(_text(bron, "volgnummer")),
            aangemaakt_op=_text(bron, "aangemaaktOp"),
        ),
        soort_melding=_text(el, "soortMelding"),
        vervangt_bericht_id=_opt_text(el, "vervangtBerichtId"),
        persoon=_decode_persoon(_child(el, "persoon")),
        verblijf=_decode_verblijf(_child(el, "verblijf")),
        beoordeling=Beoordeling(
            plicht_indicatie=_text(beoordeling, "plichtIndicatie"),
            regel=_text(beoordeling, "regel"),
            regelset_versie=_text(beoordeling, "regelsetVersie"),
        ),
        levering=Levering(
            ontvangen_van_bron_op=_text(levering, "ontvangenVanBronOp"),
            leveringstermijn_dagen=int(_text(levering, "leveringstermijnDagen")),
            vertraging_dagen=int(_text(levering, "vertragingDagen")),
        ),
    )


def _decode_persoon(el: etree._Element) -> DuoPersoon:
    naam = _child(el, "naam")
    datum = _child(el, "geboortedatum")
    return DuoPersoon(
        bsn=_opt_text(el, "bsn"),
        v_nummer=_text(el, "vNummer"),
        geslachtsnaam=_text(naam, "geslachtsnaam"),
        voorvoegsel=_opt_text(naam, "voorvoegsel"),
        voornamen=_opt_text(naam, "voornamen"),
        geboortedatum=DuoDatum(_opt_int(datum, "jaar"), _opt_int(datum, "maand"), _opt_int(datum, "dag")),
        geslacht=_text(el, "geslacht"),
        nationaliteiten=tuple((n.text or "").strip() for n in el.findall(_q("nationaliteit"))),
        gemeentecode=_opt_text(el, "gemeentecode"),
    )


def _decode_verblijf(el: etree._Element) -> DuoVerblijf:
    einddatum = _opt_text(el, "einddatum")
    return DuoVerblijf(
        documentsoort=_text(el, "documentsoort"),
        verblijfsdoel=_text(el, "verblijfsdoel"),
        wettelijke_grondslag=_text(el, "wettelijkeGrondslag"),
        unierechtelijke_grondslag=_opt_text(el, "unierechtelijkeGrondslag"),
        datum_besluit=_date(_text(el, "datumBesluit")),
        ingangsdatum=_date(_text(el, "ingangsdatum")),
        einddatum=None if einddatum is None else _date(einddatum),
    )


# ---------------------------------------------------------------- Ontvangstbevestiging

def encode_ontvangstbevestiging(b: DuoOntvangstbevestiging) -> etree._Element:
    root = _root("Ontvangstbevestiging")
    _add(root, "berichtId", b.bericht_id)
    _add(root, "status", b.status)
    _add_opt(root, "kenmerk", b.kenmerk)
    _add(root, "ontvangenOp", b.ontvangen_op)
    _add(root, "berichtDigest", b.bericht_digest)
    _encode_fouten(root, b.fouten)
    return root


@_values_hidden
def decode_ontvangstbevestiging(el: etree._Element) -> DuoOntvangstbevestiging:
    _expect(el, "Ontvangstbevestiging")
    return DuoOntvangstbevestiging(
        bericht_id=_text(el, "berichtId"),
        status=_text(el, "status"),
        kenmerk=_opt_text(el, "kenmerk"),
        ontvangen_op=_text(el, "ontvangenOp"),
        bericht_digest=_text(el, "berichtDigest"),
        fouten=_decode_fouten(el),
    )


# ---------------------------------------------------------------- VorderingOverdracht

def encode_vorderingoverdracht(v: VorderingOverdracht) -> etree._Element:
    root = _root("VorderingOverdracht")
    _add(root, "vorderingId", v.vordering_id)
    _add(root, "soortVordering", v.soort_vordering)
    _encode_debiteur(_sub(root, "debiteur"), v.debiteur)
    _add(root, "bedragInCenten", v.bedrag_in_centen)
    beschikking = _sub(root, "beschikking")
    _add(beschikking, "kenmerk", v.beschikking_kenmerk)
    _add(beschikking, "datum", v.beschikking_datum)
    _add(beschikking, "wettelijkeGrondslag", v.beschikking_grondslag)
    _add(root, "vervaldatum", v.vervaldatum)
    _add(root, "aanmaningVerzondenOp", v.aanmaning_verzonden_op)
    return root


def _encode_debiteur(el: etree._Element, d: Debiteur) -> None:
    _add(el, "bsn", d.bsn)
    _add_opt(el, "vNummer", d.v_nummer)
    _add(el, "geslachtsnaam", d.geslachtsnaam)
    _add_opt(el, "voorvoegsel", d.voorvoegsel)
    _add_opt(el, "voornamen", d.voornamen)
    _add(el, "geboortedatum", d.geboortedatum)
    adres = _sub(el, "adres")
    _add(adres, "straat", d.adres.straat)
    _add(adres, "huisnummer", d.adres.huisnummer)
    _add_opt(adres, "huisnummertoevoeging", d.adres.huisnummertoevoeging)
    _add(adres, "postcode", d.adres.postcode)
    _add(adres, "woonplaats", d.adres.woonplaats)


@_values_hidden
def decode_vorderingoverdracht(el: etree._Element) -> VorderingOverdracht:
    _expect(el, "VorderingOverdracht")
    beschikking = _child(el, "beschikking")
    return VorderingOverdracht(
        vordering_id=_text(el, "vorderingId"),
        soort_vordering=_text(el, "soortVordering"),
        debiteur=_decode_debiteur(_child(el, "debiteur")),
        bedrag_in_centen=int(_text(el, "bedragInCenten")),
        beschikking_kenmerk=_text(beschikking, "kenmerk"),
        beschikking_datum=_date(_text(beschikking, "datum")),
        beschikking_grondslag=_text(beschikking, "wettelijkeGrondslag"),
        vervaldatum=_date(_text(el, "vervaldatum")),
        aanmaning_verzonden_op=_date(_text(el, "aanmaningVerzondenOp")),
    )


def _decode_debiteur(el: etree._Element) -> Debiteur:
    adres = _child(el, "adres")
    return Debiteur(
        bsn=_text(el, "bsn"),
        v_nummer=_opt_text(el, "vNummer"),
        geslachtsnaam=_text(el, "geslachtsnaam"),
        voorvoegsel=_opt_text(el, "voorvoegsel"),
        voornamen=_opt_text(el, "voornamen"),
        geboortedatum=_date(_text(el, "geboortedatum")),
        adres=Adres(
            straat=_text(adres, "straat"),
            huisnummer=int(_text(adres, "huisnummer")),
            huisnummertoevoeging=_opt_text(adres, "huisnummertoevoeging"),
            postcode=_text(adres, "postcode"),
            woonplaats=_text(adres, "woonplaats"),
        ),
    )


# ---------------------------------------------------------------- VorderingStatus

def encode_vorderingstatus(s: VorderingStatus) -> etree._Element:
    root = _root("VorderingStatus")
    _add(root, "berichtId", s.bericht_id)
    _add(root, "vorderingId", s.vordering_id)
    _add_opt(root, "cjibZaaknummer", s.cjib_zaaknummer)
    _add(root, "status", s.status)
    _add(root, "peilmoment", s.peilmoment)
    _add_opt(root, "openstaandBedragInCenten", s.openstaand_bedrag_in_centen)
    _encode_fouten(root, s.fouten)
    return root


@_values_hidden
def decode_vorderingstatus(el: etree._Element) -> VorderingStatus:
    _expect(el, "VorderingStatus")
    return VorderingStatus(
        bericht_id=_text(el, "berichtId"),
        vordering_id=_text(el, "vorderingId"),
        cjib_zaaknummer=_opt_text(el, "cjibZaaknummer"),
        status=_text(el, "status"),
        peilmoment=_text(el, "peilmoment"),
        openstaand_bedrag_in_centen=_opt_int(el, "openstaandBedragInCenten"),
        fouten=_decode_fouten(el),
    )


# ---------------------------------------------------------------- CJIB's business rules, checked on intake

def vordering_rules(v: VorderingOverdracht, handover_day: dt.date) -> list[Fout]:
    """The rules CJIB enforces, checked before the claim leaves DUO's side; empty when all hold.

    Checked at intake so that DUO gets a 400 with ``fout`` at once instead of a later
    AFGEWEZEN_DOOR_CJIB. Messages name fields, never values.
    """
    root = "/VorderingOverdracht"
    fouten: list[Fout] = []
    if not bsn_valid(v.debiteur.bsn):
        fouten.append(Fout("BSN_ELFPROEF", "bsn fails the 11-test", f"{root}/debiteur/bsn"))
    if v.vervaldatum >= handover_day:
        fouten.append(Fout("VERVALDATUM_NIET_VERSTREKEN",
                           "vervaldatum must lie before the day of hand-over", f"{root}/vervaldatum"))
    if v.aanmaning_verzonden_op < v.vervaldatum:
        fouten.append(Fout("AANMANING_VOOR_VERVALDATUM",
                           "aanmaningVerzondenOp must lie on or after vervaldatum", f"{root}/aanmaningVerzondenOp"))
    if (handover_day - v.aanmaning_verzonden_op).days < AANMANINGSTERMIJN_DAGEN:
        fouten.append(Fout("AANMANINGSTERMIJN_TE_KORT",
                           f"aanmaningVerzondenOp must lie at least {AANMANINGSTERMIJN_DAGEN} days "
                           "before the day of hand-over", f"{root}/aanmaningVerzondenOp"))
    return fouten

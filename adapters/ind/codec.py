"""IND codec (profile ind-wus): ``ind:*`` elements <-> ``gateway.core.models``. Pure: no I/O, no clock.

Decoders expect elements that already passed the XSD (``gateway.wire.xmlsafe.validate``); encoders
produce schema-valid elements with the ``ind`` prefix and the XSD's element order.
``xs:date`` values with a zone suffix keep only the calendar date (calendar dates are dates in
Europe/Amsterdam per the contract); timestamps stay lexical strings (see ``gateway.core.models``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from lxml import etree

from gateway.core.bsn import bsn_valid
from gateway.core.models import IndFeedPage, IndMelding, IndPersoon, IndVerblijf
from gateway.wire.xmlcodec import Vocabulary, opt_date, parse_date

__all__ = [
    "IND_NS",
    "ACTION_ONTVANG",
    "ACTION_ONTVANG_RESPONSE",
    "ACTION_HAAL",
    "ACTION_HAAL_RESPONSE",
    "decode_melding",
    "encode_melding",
    "encode_ontvangstbevestiging",
    "encode_haal_verzoek",
    "decode_haal_verzoek",
    "encode_haal_antwoord",
    "decode_haal_antwoord",
    "business_rules",
    "bsn_valid",
]

IND_NS = "urn:nl:ind:gegevenslevering:inburgering:v1"
NSMAP = {"ind": IND_NS}

# wsam:Action / soapAction values from ind-vergunningmelding-v1.wsdl.
ACTION_ONTVANG = f"{IND_NS}/OntvangMelding"
ACTION_ONTVANG_RESPONSE = f"{IND_NS}/OntvangMeldingResponse"
ACTION_HAAL = f"{IND_NS}/HaalMeldingen"
ACTION_HAAL_RESPONSE = f"{IND_NS}/HaalMeldingenResponse"


# ---------------------------------------------------------------- helpers

_X = Vocabulary(IND_NS, "ind")
_q = _X.q
_root = _X.root
_add = _X.add
_add_opt = _X.add_opt
_expect = _X.expect
_child = _X.child
_text = _X.text
_opt_text = _X.opt_text
_date = parse_date
_opt_date = opt_date
_values_hidden = _X.values_hidden


# ---------------------------------------------------------------- VergunningMelding

@_values_hidden
def decode_melding(el: etree._Element) -> IndMelding:
    """``ind:VergunningMelding`` (schema-valid) -> IndMelding."""
    _expect(el, "VergunningMelding")
    return IndMelding(
        melding_id=_text(el, "meldingId"),
        volgnummer=int(_text(el, "volgnummer")),
        soort_melding=_text(el, "soortMelding"),
        correctie_van=_opt_text(el, "correctieVan"),
        aangemaakt_op=_text(el, "aangemaaktOp"),
        persoon=_decode_persoon(_child(el, "persoon")),
        verblijf=_decode_verblijf(_child(el, "verblijf")),
    )


def _decode_persoon(el: etree._Element) -> IndPersoon:
    return IndPersoon(
        v_nummer=_text(el, "vNummer"),
        bsn=_opt_text(el, "bsn"),
        geslachtsnaam=_text(el, "geslachtsnaam"),
        voorvoegsel=_opt_text(el, "voorvoegsel"),
        voornamen=_opt_text(el, "voornamen"),
        geboortedatum=_text(el, "geboortedatum"),
        geslacht=_text(el, "geslacht"),
        nationaliteiten=tuple((n.text or "").strip() for n in el.findall(_q("nationaliteit"))),
        gemeentecode=_opt_text(el, "gemeentecode"),
    )


def _decode_verblijf(el: etree._Element) -> IndVerblijf:
    return IndVerblijf(
        documentnummer=_text(el, "documentnummer"),
        documentsoort=_text(el, "documentsoort"),
        verblijfsdoel=_text(el, "verblijfsdoel"),
        wettelijke_grondslag=_text(el, "wettelijkeGrondslag"),
        unierechtelijke_grondslag=_opt_text(el, "unierechtelijkeGrondslag"),
        datum_besluit=_date(_text(el, "datumBesluit")),
        ingangsdatum=_date(_text(el, "ingangsdatum")),
        einddatum=_opt_date(_opt_text(el, "einddatum")),
    )


def encode_melding(m: IndMelding) -> etree._Element:
    """IndMelding -> ``ind:VergunningMelding``."""
    root = _root("VergunningMelding")
    _add(root, "meldingId", m.melding_id)
    _add(root, "volgnummer", m.volgnummer)
    _add(root, "soortMelding", m.soort_melding)
    _add_opt(root, "correctieVan", m.correctie_van)
    _add(root, "aangemaaktOp", m.aangemaakt_op)
    _encode_persoon(etree.SubElement(root, _q("persoon")), m.persoon)
    _encode_verblijf(etree.SubElement(root, _q("verblijf")), m.verblijf)
    return root


def _encode_persoon(el: etree._Element, p: IndPersoon) -> None:
    _add(el, "vNummer", p.v_nummer)
    _add_opt(el, "bsn", p.bsn)
    _add(el, "geslachtsnaam", p.geslachtsnaam)
    _add_opt(el, "voorvoegsel", p.voorvoegsel)
    _add_opt(el, "voornamen", p.voornamen)
    _add(el, "geboortedatum", p.geboortedatum)
    _add(el, "geslacht", p.geslacht)
    for code in p.nationaliteiten:
        _add(el, "nationaliteit", code)
    _add_opt(el, "gemeentecode", p.gemeentecode)


def _encode_verblijf(el: etree._Element, v: IndVerblijf) -> None:
    _add(el, "documentnummer", v.documentnummer)
    _add(el, "documentsoort", v.documentsoort)
    _add(el, "verblijfsdoel", v.verblijfsdoel)
    _add(el, "wettelijkeGrondslag", v.wettelijke_grondslag)
    _add_opt(el, "unierechtelijkeGrondslag", v.unierechtelijke_grondslag)
    _add(el, "datumBesluit", v.datum_besluit)
    _add(el, "ingangsdatum", v.ingangsdatum)
    _add_opt(el, "einddatum", v.einddatum)


# ---------------------------------------------------------------- Ontvangstbevestiging

def encode_ontvangstbevestiging(ontvangst_id: str, melding_id: str, volgnummer: int,
                                ontvangen_op: str, digest: str) -> etree._Element:
    """The answer to OntvangMelding; ``digest`` is base64 sha256 of exc-c14n of the melding."""
    root = _root("Ontvangstbevestiging")
    _add(root, "ontvangstId", ontvangst_id)
    _add(root, "meldingId", melding_id)
    _add(root, "volgnummer", volgnummer)
    _add(root, "ontvangenOp", ontvangen_op)
    _add(root, "meldingDigest", digest)
    return root


# ---------------------------------------------------------------- HaalMeldingen (catch-up feed)

def encode_haal_verzoek(vanaf: int, maximaal: int) -> etree._Element:
    root = _root("HaalMeldingenVerzoek")
    _add(root, "vanafVolgnummer", vanaf)
    _add(root, "maximaalAantal", maximaal)
    return root


@_values_hidden
def decode_haal_verzoek(el: etree._Element) -> tuple[int, int]:
    """``ind:HaalMeldingenVerzoek`` -> (vanafVolgnummer, maximaalAantal); for the IND simulator."""
    _expect(el, "HaalMeldingenVerzoek")
    return int(_text(el, "vanafVolgnummer")), int(_text(el, "maximaalAantal"))


def encode_haal_antwoord(meldingen: Iterable[etree._Element], laatste_volgnummer: int) -> etree._Element:
    """``ind:HaalMeldingenAntwoord`` holding copies of the given ``ind:VergunningMelding`` elements."""
    root = _root("HaalMeldingenAntwoord")
    for melding in meldingen:
        copied = copy.deepcopy(melding)
        copied.tail = None
        root.append(copied)
    _add(root, "laatsteVolgnummer", laatste_volgnummer)
    return root


@_values_hidden
def decode_haal_antwoord(el: etree._Element) -> IndFeedPage:
    """Each notification is kept as its own serialized element, to go through the same checks
    (and digest) as a pushed one."""
    _expect(el, "HaalMeldingenAntwoord")
    meldingen = tuple(etree.tostring(m, with_tail=False) for m in el.findall(_q("VergunningMelding")))
    return IndFeedPage(meldingen=meldingen, laatste_volgnummer=int(_text(el, "laatsteVolgnummer")))


# ---------------------------------------------------------------- business rules (contract check 6)

def business_rules(m: IndMelding) -> list[tuple[str, str]]:
    """Broken contract rules as (code, message); empty when all hold. Messages name fields, never values."""
    broken: list[tuple[str, str]] = []
    if (m.soort_melding == "CORRECTIE") != (m.correctie_van is not None):
        broken.append(("CORRECTIE_VAN", "correctieVan must be present exactly when soortMelding is CORRECTIE"))
    if m.persoon.bsn is not None and not bsn_valid(m.persoon.bsn):
        broken.append(("BSN_ELFPROEF", "persoon/bsn fails the 11-test"))
    return broken

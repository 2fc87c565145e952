"""CJIB answers and status changes -> DUO ``VorderingStatus`` (pure).

Every ``VorderingStatus`` gets a ``berichtId`` derived from the claim and the event that caused
it (uuid5), so that reading the same feed entry twice, or handling the same acceptance after a
crash, produces the same message and DUO deduplicates it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping

from gateway.core.models import CjibOntvangst, CjibStatuswijziging, Fout, VorderingStatus

__all__ = [
    "IN_BEHANDELING_BIJ_CJIB",
    "AFGEWEZEN_DOOR_CJIB",
    "status_code",
    "status_bericht_id",
    "feed_key",
    "from_ontvangst",
    "from_statuswijziging",
    "from_refusal",
]

IN_BEHANDELING_BIJ_CJIB = "IN_BEHANDELING_BIJ_CJIB"
AFGEWEZEN_DOOR_CJIB = "AFGEWEZEN_DOOR_CJIB"

_RENAMED = {"IN_BEHANDELING": IN_BEHANDELING_BIJ_CJIB, "AFGEWEZEN": AFGEWEZEN_DOOR_CJIB}
# Fixed for ever: changing it would change every berichtId and defeat DUO's deduplication.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:chain-gateway:cjib:vorderingstatus")
_DUO_CODE = re.compile(r"^[A-Z0-9_]{1,80}$")
_MAX_TEXT = 1000


def status_code(cjib_status: str) -> str:
    """CJIB's status name as DUO knows it."""
    return _RENAMED.get(cjib_status, cjib_status)


def status_bericht_id(vordering_id: str, key: str) -> str:
    """Deterministic berichtId: key is ``feed_key(n)``, ``"accepted"`` or ``"refused"``."""
    return str(uuid.uuid5(_NAMESPACE, f"{vordering_id}|{key}"))


def feed_key(volgnummer: int) -> str:
    return f"cjib-volgnummer:{volgnummer}"


def from_ontvangst(vordering_id: str, ontvangst: CjibOntvangst, peilmoment: str) -> VorderingStatus:
    """CJIB accepted the claim (201)."""
    return VorderingStatus(
        bericht_id=status_bericht_id(vordering_id, "accepted"),
        vordering_id=vordering_id,
        status=IN_BEHANDELING_BIJ_CJIB,
        peilmoment=peilmoment,
        cjib_zaaknummer=ontvangst.zaaknummer,
    )


def from_statuswijziging(w: CjibStatuswijziging) -> VorderingStatus:
    """One entry of CJIB's status feed."""
    return VorderingStatus(
        bericht_id=status_bericht_id(w.opdrachtgever_referentie, feed_key(w.volgnummer)),
        vordering_id=w.opdrachtgever_referentie,
        status=status_code(w.status),
        peilmoment=w.tijdstip,
        cjib_zaaknummer=w.zaaknummer,
        openstaand_bedrag_in_centen=w.openstaand_centen,
        fouten=tuple(w.redenen),
    )


def from_refusal(vordering_id: str, errors: Iterable[Mapping[str, object]], peilmoment: str) -> VorderingStatus:
    """CJIB refused the claim with 400; its ``errors`` become DUO ``fout`` elements."""
    return VorderingStatus(
        bericht_id=status_bericht_id(vordering_id, "refused"),
        vordering_id=vordering_id,
        status=AFGEWEZEN_DOOR_CJIB,
        peilmoment=peilmoment,
        fouten=tuple(_fout(e) for e in errors)[:100],
    )


def _fout(e: Mapping[str, object]) -> Fout:
    # DUO's schema is stricter than CJIB's problem details: code [A-Z0-9_]{1,80}, texts 1..1000.
    code = str(e.get("code") or "")
    if not _DUO_CODE.match(code):
        code = "CJIB_" + re.sub(r"[^A-Z0-9_]", "_", code.upper())[:75] if code else "CJIB_FOUT"
    omschrijving = str(e.get("omschrijving") or "").strip() or "Geen omschrijving van CJIB."
    pointer = str(e.get("pointer") or "") or None
    return Fout(code=code, omschrijving=omschrijving[:_MAX_TEXT],
                pad=pointer[:_MAX_TEXT] if pointer else None)

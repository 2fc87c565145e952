"""A sandbox PKI for tests: import ``make_pki`` from tests/conftest.py into a session fixture.

    @pytest.fixture(scope="session")
    def pki_paths(tmp_path_factory):
        return make_pki(tmp_path_factory)

``make_pki`` returns the paths from ``gateway.security.pki.init`` (keys "ca", "ca-key", "ind",
"ind-key", ... for gateway, ind, duo, cjib), the directory under "dir", and extra certificates
as (key_path, cert_path) pairs:

- "other-ca": a second CA with the same subject name as "ca" (an impostor CA);
- "ind-other-ca": a certificate with ind's subject issued by that impostor CA;
- "ind-expired": ind's subject, valid until a day ago;
- "ind-future": ind's subject, valid from tomorrow;
- "ind-rollover": a second, valid certificate for ind (key rollover);
- "cjib-ec": an EC P-256 certificate for cjib (ES256 / ecdsa-sha256).

and "issue": ``gateway.security.pki.issue`` bound to that directory, for anything else.
The PKI is made once per test session (RSA key generation takes tens of milliseconds per key).
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

from gateway.security import pki

_made: dict[str, Any] | None = None


def make_pki(tmp_path_factory: Any) -> dict[str, Any]:
    global _made
    if _made is None:
        _made = _build(Path(tmp_path_factory.mktemp("pki")))
    return _made


def _build(directory: Path) -> dict[str, Any]:
    paths: dict[str, Any] = dict(pki.init(directory))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    day = dt.timedelta(days=1)
    other_ca = pki.make_ca(directory, "other-ca")  # same subject name as the real CA
    paths.update({
        "dir": directory,
        "other-ca": other_ca,
        "ind-other-ca": pki.issue(directory, "ind-other-ca", ca=other_ca, common_name="ind"),
        "ind-expired": pki.issue(directory, "ind-expired", common_name="ind",
                                 not_before=now - 30 * day, not_after=now - day),
        "ind-future": pki.issue(directory, "ind-future", common_name="ind",
                                not_before=now + day, not_after=now + 30 * day),
        "ind-rollover": pki.issue(directory, "ind-rollover", common_name="ind"),
        "cjib-ec": pki.issue(directory, "cjib-ec", common_name="cjib", key_type="ec"),
        "issue": functools.partial(pki.issue, directory),
    })
    return paths


# ------------------------------------------------------------------ helpers for the security tests

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "contracts" / "samples"


def keypair(paths: dict[str, Any], name: str):
    """The KeyPair for a name from ``pki.init`` ("ind") or an extra pair ("ind-expired")."""
    from gateway.security.keys import load_keypair

    if isinstance(paths.get(name), tuple):
        key_path, cert_path = paths[name]
    else:
        key_path, cert_path = paths[f"{name}-key"], paths[name]
    return load_keypair(key_path, cert_path)


def trust(paths: dict[str, Any], partner: str, *certs: str, anchors: tuple[str, ...] = ("ca",)):
    """A PartnerTrust pinning the named certificates (default: the partner's own)."""
    from gateway.security.keys import load_trust

    def cert_path(name: str) -> Path:
        value = paths[name]
        return value[1] if isinstance(value, tuple) else value

    return load_trust(partner, [cert_path(a) for a in anchors], [cert_path(c) for c in certs or (partner,)])


IND_ACTION = "urn:nl:ind:gegevenslevering:inburgering:v1/OntvangMelding"
IND_MESSAGE_ID = "urn:uuid:6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"


def ind_payload():
    """A fresh copy of the sample ind:VergunningMelding element."""
    from gateway import soap, xmlsafe

    root = xmlsafe.parse((SAMPLES / "ind-ontvangmelding-request.xml").read_bytes())
    return root.find(f"{{{soap.SOAP_NS}}}Body")[0]


def ind_envelope(relates_to: str | None = None):
    """The unsigned OntvangMelding envelope, as gateway.soap.build_envelope makes it."""
    from gateway import soap

    return soap.build_envelope(ind_payload(), to="https://127.0.0.1/ind/meldingen", action=IND_ACTION,
                               message_id=IND_MESSAGE_ID, relates_to=relates_to)


def signed_request(key, now, parts=None, **kw) -> bytes:
    from gateway.security import wsse

    return wsse.sign_envelope(ind_envelope(), key, parts=parts or wsse.REQUEST_PARTS, now=now, **kw)

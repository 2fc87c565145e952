"""The operator console and its JSON API against a real gateway (both store backends).

Signed out nothing answers but the sign-in page, /health and /metrics; sign-in failures lock an
operator out; sessions expire; a form without its CSRF token changes nothing; roles are enforced
and refusals of attempts to act are audited; a dead letter is retried from the console and
delivered; a viewer never receives personal data; search by BSN works through the keyed hash;
the console and ``gateway show`` show the same timeline.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from typing import Any

import httpx
from typer.testing import CliRunner

from adapters.duo.simulator import Faults
from gateway.cli import app
from gateway.console import auth, openapi
from gateway.core import audit
from tests.e2e.helpers import bericht_id, duo_policy, meldingen, wait_until

PASSWORD = "correct horse battery"
PEOPLE = {"vera": ["viewer"], "otto": ["operator"], "pia": ["personal-data"]}


def _operators(chain: Any) -> None:
    for name, roles in PEOPLE.items():
        auth.add_operator(chain.daemon.rt.store, name, roles, PASSWORD)


def _browser(chain: Any, name: str, password: str = PASSWORD) -> httpx.Client:
    """A client that signs in with the form, as a browser does (cookie session)."""
    c = httpx.Client(base_url=chain.daemon.operator_url, follow_redirects=False, timeout=20)
    token = _csrf(c, "/console/sign-in")
    r = c.post("/console/sign-in", data={"name": name, "password": password, "csrf": token})
    assert r.status_code == 303, r.text
    return c


def _csrf(c: httpx.Client, path: str = "/console/") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', c.get(path).text)
    assert found is not None, f"no csrf field on {path}"
    return found.group(1)


def _api(chain: Any, name: str) -> httpx.Client:
    r = httpx.post(chain.daemon.operator_url + "/api/v1/session", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return httpx.Client(base_url=chain.daemon.operator_url, timeout=20,
                        headers={"authorization": "Bearer " + r.json()["token"]})


def _audit(chain: Any, **kw: Any) -> list[audit.Entry]:
    return audit.entries(chain.daemon.rt.store, **kw)


def test_signed_out_only_health_metrics_and_sign_in_answer(make_chain: Any) -> None:
    chain = make_chain(overrides={"console": {"max_failed_signins": 3, "idle_seconds": 1.5}})
    _operators(chain)
    c = httpx.Client(base_url=chain.daemon.operator_url, follow_redirects=False)
    assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200
    assert c.get("/console/sign-in").status_code == 200
    for path in ["/console/", "/console/messages", "/console/messages/1", "/console/audit", "/console/dead-letters",
                 "/console/rules"]:
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in"), path
    for path in [p.replace("{ref}", "1").replace("{delivery}", "1").replace("{part}", "inbound-1")
                 for p in openapi.SPEC["paths"]]:
        assert c.get(path).status_code == 401, path
        if path != "/api/v1/session":
            assert c.post(path, json={}).status_code in (401, 404), path
    assert c.post("/console/deliveries/1/retry", data={"reason": "x"}).status_code == 401

    # Wrong passwords, then a lock-out that holds for the right password too; all audited.
    for _ in range(3):
        assert c.post("/api/v1/session", json={"name": "otto", "password": "wrong password!"}).status_code == 401
    locked = c.post("/api/v1/session", json={"name": "otto", "password": PASSWORD})
    assert locked.status_code == 401 and "locked out" in locked.json()["title"]
    failed = _audit(chain, actor="otto", action="sign-in-failed")
    assert len(failed) == 4 and {e.outcome for e in failed} == {"refused"}
    assert [e.reason for e in failed][0] == "locked out"
    assert c.post("/api/v1/session", json={"name": "nobody", "password": PASSWORD}).status_code == 401
    assert _audit(chain, actor="nobody")[0].reason == "unknown operator"

    # The sign-in form needs its own token.
    r = c.post("/console/sign-in", data={"name": "vera", "password": PASSWORD})
    assert r.status_code == 403 and "expired" in r.text

    # A session ends after idle_seconds without a request.
    b = _browser(chain, "vera")
    assert b.get("/console/").status_code == 200
    assert _audit(chain, actor="vera", action="sign-in")[0].channel == "console"
    time.sleep(2.0)
    r = b.get("/console/")
    assert r.status_code == 303 and "expired=1" in r.headers["location"]
    assert "expired" in b.get(r.headers["location"]).text


def test_dead_letter_retried_from_the_console_roles_csrf_masking_and_audit(make_chain: Any) -> None:
    chain = make_chain(duo_faults=Faults(script=[400]),
                       overrides=duo_policy(backoff_initial_seconds=0.1, backoff_max_seconds=0.5))
    _operators(chain)
    store = chain.daemon.rt.store
    [m] = meldingen(1, seed=1313)
    assert chain.ind.push(chain.ind_endpoint, m).accepted
    key = bericht_id(m.melding_id)
    assert wait_until(lambda: store.query("SELECT state FROM outbox WHERE idempotency_key = :k", {"k": key})[0][0]
                      == "dead", 20)
    delivery = int(store.query("SELECT id FROM outbox WHERE idempotency_key = :k", {"k": key})[0][0])
    p = m.persoon
    secrets_ = [p.bsn, p.v_nummer, p.geslachtsnaam, p.geboortedatum]
    viewer, otto, pia = _api(chain, "vera"), _api(chain, "otto"), _api(chain, "pia")

    # Search: by berichtId, by BSN and V-number (keyed hash), by state; bad and unknown input.
    found = viewer.get("/api/v1/messages", params={"ref": key}).json()["messages"]
    assert [x["key"] for x in found] == [m.melding_id]
    mid = found[0]["id"]
    assert [x["id"] for x in viewer.get("/api/v1/messages", params={"person": p.bsn}).json()["messages"]] == [mid]
    assert [x["id"] for x in viewer.get("/api/v1/messages", params={"person": p.v_nummer}).json()["messages"]] == [mid]
    assert [x["id"] for x in viewer.get("/api/v1/messages", params={"state": "dead"}).json()["messages"]] == [mid]
    assert not store.query("SELECT 1 FROM person_lookup WHERE digest = :b", {"b": p.bsn})
    for bad, word in [({"person": "123456789"}, "11-test"), ({"state": "gone"}, "state"),
                      ({"since": "yesterday"}, "since"), ({"ref": "a b"}, "ref"), ({"after": "x"}, "after")]:
        r = viewer.get("/api/v1/messages", params=bad)
        assert r.status_code == 400 and word in r.json()["title"], (bad, r.text)
    assert viewer.get("/api/v1/messages/no-such-id").status_code == 404
    vera = _browser(chain, "vera")
    page = vera.get("/console/messages", params={"since": "yesterday"})
    assert page.status_code == 400 and "is not a date" in page.text
    # The console's form posts the BSN and lands on a URL with its keyed hash only.
    posted = vera.post("/console/messages", data={"person": p.bsn, "csrf": _csrf(vera)})
    assert posted.status_code == 303 and p.bsn not in posted.headers["location"]
    assert f'href="/console/messages/{mid}"' in vera.get(posted.headers["location"]).text

    # A viewer sees the message masked everywhere and may not act or unmask (refusals audited).
    vera_search = posted.headers["location"]
    for path in ["/api/v1/messages/" + key, "/console/messages/" + key, "/console/messages?person=" + p.bsn, vera_search,
                 "/api/v1/dashboard", "/console/", "/api/v1/audit", "/console/audit", "/api/v1/dead-letters"]:
        body = viewer.get(path).text
        assert not [s for s in secrets_ if s and s in body], path
    assert viewer.post(f"/api/v1/deliveries/{delivery}/retry", json={}).status_code == 403
    assert viewer.post(f"/api/v1/messages/{mid}/unmask", json={"reason": "curious"}).status_code == 403
    assert [(e.action, e.outcome) for e in _audit(chain, actor="vera")][:2] == [
        ("show-personal-data", "refused"), ("retry", "refused")]

    # The CLI shows the same timeline as the console's API.
    shown = CliRunner().invoke(app, ["show", key, "--json", "--config", str(chain.config_file)])
    cli_view, api_view = json.loads(shown.stdout), otto.get(f"/api/v1/messages/{mid}").json()
    for field in ("id", "route", "key", "state", "person", "events", "deliveries", "facts"):
        assert cli_view[field] == api_view[field], field

    # Without the CSRF token a cookie session changes nothing; the attempt is audited.
    browser = _browser(chain, "otto")
    r = browser.post(f"/console/deliveries/{delivery}/retry", data={"reason": "DUO fixed it"})
    assert r.status_code == 403 and "security token" in r.text
    assert browser.post(f"/api/v1/deliveries/{delivery}/retry", json={}).status_code == 403
    assert store.query("SELECT state FROM outbox WHERE id = :i", {"i": delivery})[0][0] == "dead"
    assert _audit(chain, actor="otto", action="csrf-refused")

    # Resolve needs a reason; retry with the token delivers it; a second retry is the wrong state.
    assert otto.post(f"/api/v1/deliveries/{delivery}/resolve", json={}).status_code == 400
    r = browser.post(f"/console/deliveries/{delivery}/retry",
                     data={"reason": "DUO fixed it", "csrf": _csrf(browser, f"/console/messages/{mid}")})
    assert r.status_code == 303
    assert "queued again" in browser.get(r.headers["location"]).text
    assert wait_until(lambda: store.query("SELECT state FROM outbox WHERE id = :i", {"i": delivery})[0][0]
                      == "delivered", 20)
    again = otto.post(f"/api/v1/deliveries/{delivery}/retry", json={})
    assert again.status_code == 409 and "is delivered" in again.json()["title"]
    actions = [(e.action, e.outcome, e.channel) for e in _audit(chain, actor="otto", action="retry")]
    assert actions == [("retry", "refused", "console"), ("retry", "ok", "console")]

    # personal-data unmasks one message with a reason (audited), and downloads the exact bytes.
    assert pia.post(f"/api/v1/messages/{mid}/unmask", json={}).status_code == 400
    clear = pia.post(f"/api/v1/messages/{mid}/unmask", json={"reason": "ticket 42"}).json()
    assert clear["person"]["bsn"] == p.bsn and p.bsn in json.dumps(clear["raw"])
    assert p.bsn not in pia.get(f"/api/v1/messages/{mid}").text  # one message, one request at a time
    entry = _audit(chain, actor="pia", action="show-personal-data")[0]
    assert (entry.target, entry.reason, entry.outcome) == (f"message:{mid}", "ticket 42", "ok")
    inbound = clear["raw"][0]["name"]
    raw = pia.post(f"/api/v1/messages/{mid}/raw/{inbound}", json={"reason": "ticket 42"})
    assert raw.status_code == 200 and p.bsn.encode() in raw.content
    assert otto.post(f"/api/v1/messages/{mid}/raw/{inbound}", json={"reason": "x"}).status_code == 403


def test_bulk_dead_letters_preview_then_confirmed_action(make_chain: Any) -> None:
    chain = make_chain(duo_faults=Faults(script=[400, 400, 400]),
                       overrides=duo_policy(backoff_initial_seconds=0.1, backoff_max_seconds=0.5))
    _operators(chain)
    store = chain.daemon.rt.store
    for m in meldingen(3, seed=77):
        assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: store.query("SELECT COUNT(*) FROM outbox WHERE state = 'dead'")[0][0] == 3, 20)
    otto = _api(chain, "otto")
    preview = otto.get("/api/v1/dead-letters", params={"partner": "duo"}).json()
    assert preview["count"] == 3
    stale = otto.post("/api/v1/dead-letters/resolve", json={"partner": "duo", "expected": "2", "reason": "x"})
    assert stale.status_code == 409
    done = otto.post("/api/v1/dead-letters/resolve", json={"partner": "duo", "expected": "3", "reason": "by phone"})
    assert done.json() == {"count": 3, "done": 3, "action": "resolve"}
    assert store.query("SELECT COUNT(*) FROM outbox WHERE state = 'resolved'")[0][0] == 3
    assert len(_audit(chain, actor="otto", action="resolve")) == 3  # the same as one by one
    assert otto.get("/api/v1/dead-letters").json()["count"] == 0

    # In the console the action runs in the background and its page shows the progress.
    chain.duo.faults.script.extend([400, 400])
    for m in meldingen(2, seed=78, start=4):
        assert chain.ind.push(chain.ind_endpoint, m).accepted
    assert wait_until(lambda: store.query("SELECT COUNT(*) FROM outbox WHERE state = 'dead'")[0][0] == 2, 20)
    browser = _browser(chain, "otto")
    preview = browser.get("/console/dead-letters", params={"route": "ind-duo"})
    assert "2 dead letter(s) match" in preview.text
    form = {"route": "ind-duo", "expected": "2", "action": "retry", "reason": "DUO is back",
            "csrf": _csrf(browser, "/console/dead-letters")}
    started = browser.post("/console/dead-letters", data=form)
    assert started.status_code == 303 and "/console/dead-letters/jobs/" in started.headers["location"]
    assert wait_until(lambda: "2 of 2 handled (finished)" in browser.get(started.headers["location"]).text, 20)
    assert wait_until(lambda: store.query("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'")[0][0] == 2, 20)
    assert [(e.action, e.channel) for e in _audit(chain, actor="otto", action="retry")] == [("retry", "console")] * 2
    again = browser.post("/console/dead-letters", data=form | {"csrf": _csrf(browser, "/console/dead-letters")})
    assert again.status_code == 409 and "changed since the preview" in again.text


def test_rules_page_impact_roll_out_and_reports(make_chain: Any) -> None:
    chain = make_chain()
    _operators(chain)
    for m in meldingen(2, seed=5):
        assert chain.ind.push(chain.ind_endpoint, m).accepted
    name = chain.daemon.rt.ruleset.name
    viewer, otto = _api(chain, "vera"), _api(chain, "otto")
    report = otto.get("/api/v1/rules", params={"impact": name}).json()
    assert report["active"] == chain.daemon.rt.ruleset.version and name in report["available"]
    assert report["impact"]["evaluated"] == 2 and report["impact"]["changed"] == 0
    assert {"waiting", "delivered_last_hour", "hours_to_drain"} <= set(report["claims_backlog"])
    assert {"total", "distribution", "people"} <= set(report["delays"])
    assert otto.get("/api/v1/rules", params={"impact": "no-such-set"}).status_code == 404
    body = {"ruleset": name, "expected": "0", "reason": "yearly review"}
    assert viewer.post("/api/v1/rules/apply", json=body).status_code == 403
    assert otto.post("/api/v1/rules/apply", json=body | {"expected": "5"}).status_code == 409
    done = otto.post("/api/v1/rules/apply", json=body)
    assert done.status_code == 200 and done.json()["corrections_queued"] == 0
    outcomes = [(e.actor, e.outcome, e.channel) for e in _audit(chain, action="rules-apply")]
    assert outcomes == [("otto", "ok", "console"), ("otto", "refused", "console"), ("vera", "refused", "console")]
    page = _browser(chain, "otto").get("/console/rules", params={"impact": name})
    assert page.status_code == 200 and "Roll out and queue 0 correction(s)" in page.text


def test_client_certificate_sign_in_on_a_tls_operator_listener(make_chain: Any, tmp_path: Any) -> None:
    """With [console] client_ca_files the operator listener runs TLS; a certificate of the
    operators' CA whose CN names an operator signs in (audited); other certificates do not."""
    from gateway.security import pki

    ca_key, ca_cert = pki.make_ca(tmp_path, "operators-ca", common_name="Operators CA")
    pki.issue(tmp_path, "anna", ca=(ca_key, ca_cert))
    pki.issue(tmp_path, "stranger", ca=(ca_key, ca_cert))
    chain = make_chain(overrides={"console": {"client_ca_files": [str(ca_cert)]}})
    auth.add_operator(chain.daemon.rt.store, "anna", ["operator"], None)
    url = chain.daemon.operator_url
    assert url.startswith("https://")
    server_ca = str(chain.pki["ca"])

    def client(name: str | None) -> httpx.Client:
        context = ssl.create_default_context(cafile=server_ca)
        if name:
            context.load_cert_chain(str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}-key.pem"))
        return httpx.Client(base_url=url, verify=context, follow_redirects=False, timeout=20)

    def sign_in(c: httpx.Client, **form: str) -> httpx.Response:
        token = _csrf(c, "/console/sign-in")
        return c.post("/console/sign-in", data={"csrf": token, **form})

    anna = client("anna")
    assert "certificate of <strong>anna</strong>" in anna.get("/console/sign-in").text
    assert sign_in(anna, method="certificate").status_code == 303
    assert "Signed in as <strong>anna</strong>" in anna.get("/console/").text
    entry = _audit(chain, actor="anna", action="sign-in")[0]
    assert entry.reason == "client certificate"
    # Without a password anna cannot sign in with one; a stranger's certificate signs nobody in.
    assert client(None).post("/api/v1/session", json={"name": "anna", "password": "!"}).status_code == 401
    stranger = client("stranger")
    r = sign_in(stranger, method="certificate")
    assert r.status_code == 401 and "unknown operator" in r.text
    assert _audit(chain, actor="stranger")[0].action == "sign-in-failed"
    # Health and metrics still answer (over TLS, no client certificate needed).
    assert client(None).get("/health").status_code == 200


def test_send_a_correction_of_one_notification(make_chain: Any, tmp_path: Any) -> None:
    """Notifications assessed with the faulty 2025.9 rule set; the gateway now runs 2026.1 (as
    after a restart with the new `[rules] active`): an operator corrects one parent from its page."""
    from gateway.rules import rollout
    from gateway.runtime import load_ruleset
    from tests import rules_history as h

    chain = make_chain(overrides={"rules": {"directory": str(h.rules_dir(tmp_path)), "active": h.FAULTY}})
    _operators(chain)
    ms = meldingen(40, seed=2025)
    parents = h.zambrano_parents(ms)
    assert parents
    for m in ms:
        assert chain.ind.push(chain.ind_endpoint, m).accepted
    rt = chain.daemon.rt
    # The store names the active rule set (as a roll-out does): the daemon's watch follows the store,
    # so setting only rt.ruleset would be undone within a second.
    rollout.activate(rt.store, load_ruleset(chain.config, h.CURRENT), "test", "switch without corrections")
    rt.ruleset = load_ruleset(chain.config, h.CURRENT)
    parent = sorted(parents)[0]
    other = next(m.melding_id for m in ms if m.melding_id not in parents)
    otto, vera = _api(chain, "otto"), _api(chain, "vera")
    assert vera.post(f"/api/v1/messages/{parent}/correct", json={"reason": "x"}).status_code == 403
    assert otto.post(f"/api/v1/messages/{parent}/correct", json={}).status_code == 400
    nothing = otto.post(f"/api/v1/messages/{other}/correct", json={"reason": "check"})
    assert nothing.status_code == 409 and "nothing to correct" in nothing.json()["title"]
    done = otto.post(f"/api/v1/messages/{parent}/correct", json={"reason": "Zambrano parent, ticket 7"})
    assert done.status_code == 200 and done.json() | {"queued": True} == {
        "meldingId": parent, "from": "PLICHTIG", "to": "NIET_PLICHTIG", "queued": True}
    rows = rt.store.query("SELECT facts FROM messages WHERE route = 'rules-duo'")
    assert [json.loads(r[0])["meldingId"] for r in rows] == [parent]
    again = otto.post(f"/api/v1/messages/{parent}/correct", json={"reason": "again"})
    assert again.status_code == 409 and "nothing to correct" in again.json()["title"]  # DUO gets it once
    outcomes = [(e.actor, e.outcome) for e in _audit(chain, action="send-correction")]
    assert outcomes == [("otto", "refused"), ("otto", "ok"), ("otto", "refused"), ("otto", "refused"),
                        ("vera", "refused")]
    page = _browser(chain, "otto").get(f"/console/messages/{parent}")
    assert "Send DUO a correction with the active rule set" in page.text


def test_sandbox_prints_the_console_and_its_sign_ins(tmp_path: Any) -> None:
    import os
    import stat
    import subprocess
    import sys

    from gateway.core.config import ConsoleConfig
    from gateway.core.store import Store
    from tests.paths import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "sandbox", "--count", "2", "--claims", "0", "--dir",
                          str(tmp_path / "sb")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"Operator console: http://127\.0\.0\.1:\d+/console/", run.stdout), run.stdout
    sign_ins = json.loads((tmp_path / "sb" / "console-sign-ins.json").read_text())
    assert set(sign_ins) == {"sandbox-operator", "sandbox-viewer", "sandbox-privacy"}
    assert f"sign in as sandbox-viewer (viewer): password {sign_ins['sandbox-viewer']['password']}" in run.stdout
    assert stat.S_IMODE((tmp_path / "sb" / "console-sign-ins.json").stat().st_mode) == 0o600
    store = Store(f"sqlite:///{tmp_path / 'sb' / 'gateway.db'}")
    try:
        s = auth.sign_in(store, ConsoleConfig(), "sandbox-privacy", sign_ins["sandbox-privacy"]["password"])
        assert s.roles == ("personal-data",)
        assert store.query("SELECT COUNT(*) FROM person_lookup")[0][0] == 4  # 2 notifications: BSN + V-number
    finally:
        store.close()
    # Run again in the same directory (as a user running the README's command twice): it goes on with
    # new notifications, and the sign-ins stay as they were.
    rerun = subprocess.run([sys.executable, "-m", "gateway.cli", "sandbox", "--count", "2", "--claims", "0", "--dir",
                            str(tmp_path / "sb")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "OK: 3 pushes" in " ".join(rerun.stdout.split()) and sign_ins["sandbox-viewer"]["password"] in rerun.stdout

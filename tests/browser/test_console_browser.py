"""The operator console in a real browser: Debian's Chromium, headless, driven by selenium, against
a real ``gateway run`` (a subprocess) with the simulated IND, DUO and CJIB.

An operator signs in, finds the dead letter a DUO outage made, retries it once DUO is back and
sees it delivered; a viewer never receives a BSN, V-number, name or birth date in any page source
or API answer, has no action buttons and is refused by the API; a form without its CSRF token
changes nothing; a personal-data operator unmasks the message with a reason and finds the entry
in the audit log. Every page is checked with axe-core (vendored, pinned by SHA256SUMS) for WCAG
2.1 A and AA. With CONSOLE_SCREENSHOTS=DIR the main pages are saved there as PNG
(docs/console/ holds the ones shown in the README).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.duo.simulator import Faults
from gateway.core.store import Store
from gateway.runtime import store_for
from gateway.sandbox import start_chain
from tests.e2e.helpers import REPO, GatewayProcess, bericht_id, meldingen, wait_until

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe-core"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PASSWORD = "a long sandbox password"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _axe_source() -> str:
    sums = {name: digest for digest, name in (line.split() for line in (AXE / "SHA256SUMS").read_text().splitlines())}
    data = (AXE / "axe.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sums["axe.min.js"], "axe.min.js does not match SHA256SUMS"
    return data.decode()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, pki_paths: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Chromium and its driver are missing: apt-get install chromium chromium-driver (scripts/test does)")
    directory = tmp_path_factory.mktemp("console")
    chain = start_chain(directory, start=False, pki_paths=pki_paths,
                        duo_faults=Faults(error_rate=1.0, retry_after_seconds=0),
                        overrides={"partners": {"duo": {"policy": {"max_attempts": 2, "backoff_initial_seconds": 0.1,
                                                                     "backoff_max_seconds": 0.2,
                                                                     "breaker_failures": 50}}}})
    Store(chain.config.store.dsn).migrate()
    store = store_for(chain.config)
    for name, role in (("olga", "operator"), ("victor", "viewer"), ("petra", "personal-data")):
        added = subprocess.run([sys.executable, "-m", "gateway.cli", "operator", "add", name, "--role", role,
                                "--password-stdin", "--config", str(chain.config_file)], input=PASSWORD + "\n",
                               cwd=REPO, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stdout + added.stderr
    gp = GatewayProcess(chain.config_file, directory / "gateway.log").start()
    driver = _driver()
    try:
        yield {"chain": chain, "gp": gp, "store": store, "driver": driver, "url": gp.operator_url}
    finally:
        driver.quit()
        gp.terminate()
        store.close()
        chain.stop()


def _driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(90)  # axe-core over a long page on a busy 2-core machine
    return driver


def _by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def sign_in(d: Any, url: str, name: str) -> None:
    d.delete_all_cookies()
    d.get(url + "/console/sign-in")
    d.find_element(_by("ID"), "name").send_keys(name)
    d.find_element(_by("ID"), "password").send_keys(PASSWORD)
    click(d, "CSS_SELECTOR", "button[type=submit]")
    assert "Dashboard" in d.title, [e.text for e in d.find_elements(_by("CSS_SELECTOR"), ".error")]


def _leaks(values: list[str], page: str) -> list[str]:
    """The values that stand in ``page`` as a whole word, with what surrounds them. A value found
    only inside a longer word (a 3-letter first name inside a random CSRF token) is not a leak."""
    import re

    found = []
    for v in values:
        for m in re.finditer(r"(?<![A-Za-z0-9_-])" + re.escape(v) + r"(?![A-Za-z0-9_-])", page):
            found.append(page[max(0, m.start() - 40):m.end() + 40])
    return found


def click(d: Any, kind: str, what: str) -> None:
    """Click and wait for the next page (a form post does not block the driver)."""
    from selenium.webdriver.support.ui import WebDriverWait

    old = d.find_element(_by("TAG_NAME"), "html")
    d.find_element(_by(kind), what).click()
    WebDriverWait(d, 20).until(_replaced(old))


def _replaced(old: Any) -> Any:
    """selenium's staleness_of, also when Chromium reports the old page's node as "does not belong
    to the document" (a WebDriverException, not a StaleElementReferenceException; seen in CI)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def check(_: Any) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return check


def check_axe(d: Any) -> None:
    """No WCAG 2.1 A/AA violation on the page the browser shows."""
    if not d.execute_script("return typeof window.axe !== 'undefined'"):
        d.execute_script(_axe_source())
    result = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}}).then(r => done(r.violations))"
        ".catch(e => done([{id: 'axe-error', help: String(e), nodes: []}]));", WCAG)
    assert result == [], [(v["id"], v["help"], [n.get("target") for n in v["nodes"]][:3]) for v in result]


def shot(d: Any, name: str) -> None:
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(Path(target) / f"{name}.png"))


def _hand_over_a_claim(chain: Any, gp: GatewayProcess) -> Any:
    """DUO hands one claim (a debtor with an address) to the gateway, as in the sandbox."""
    import datetime as dt

    import httpx

    from adapters.duo.simulator import generate_vorderingen, post_vorderingoverdracht
    from gateway.core.clock import AMS
    from gateway.security import keys, tls

    duo_key = keys.load_keypair(chain.pki["duo-key"], chain.pki["duo"])
    [claim] = generate_vorderingen(1, 2013, dt.datetime.now(AMS).date(), broken_every=1000)
    with httpx.Client(verify=tls.client_context(duo_key, [str(chain.pki["ca"])]), timeout=30) as client:
        r = post_vorderingoverdracht(client, f"https://127.0.0.1:{gp.ports['partners']}/duo/v1/vorderingen", claim,
                                     duo_key)
    assert r.status_code == 200, r.text
    return claim


def test_operator_finds_and_retries_a_dead_letter_viewer_sees_no_personal_data_and_unmasking_is_audited(
        rig: dict[str, Any]) -> None:
    chain, gp, store, d, url = rig["chain"], rig["gp"], rig["store"], rig["driver"], rig["url"]
    [m] = meldingen(1, seed=2013)
    assert chain.ind.push(gp.ind_endpoint, m).accepted
    key = bericht_id(m.melding_id)
    state = lambda: store.query("SELECT state FROM outbox WHERE idempotency_key = :k", {"k": key})[0][0]  # noqa: E731
    assert wait_until(lambda: state() == "dead", 30), state()
    p = m.persoon
    personal = [v for v in (p.bsn, p.v_nummer, p.geslachtsnaam, p.voornamen, p.geboortedatum) if v]

    # Signed out: the console sends the browser to the sign-in page, which passes axe.
    d.get(url + "/console/messages")
    assert d.current_url.endswith("/console/sign-in?expired=1")
    check_axe(d)
    shot(d, "sign-in")

    # The operator signs in, finds the dead letter by state and opens it.
    sign_in(d, url, "olga")
    check_axe(d)
    shot(d, "dashboard")
    d.get(url + "/console/messages")
    from selenium.webdriver.support.ui import Select

    Select(d.find_element(_by("ID"), "state")).select_by_value("dead")
    click(d, "CSS_SELECTOR", "form.search button")
    check_axe(d)
    shot(d, "search")
    links = d.find_elements(_by("CSS_SELECTOR"), "table a")
    assert len(links) == 1
    links[0].click()
    assert "Message" in d.title and "dead" in d.page_source
    check_axe(d)
    shot(d, "message")

    # A form without its CSRF token changes nothing.
    d.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    click(d, "XPATH", "//button[starts-with(normalize-space(.), 'Retry delivery')]")
    assert "security token" in d.page_source and state() == "dead"
    d.back()
    d.refresh()

    # DUO is back: retry from the message page and see it delivered.
    chain.duo.faults.error_rate = 0.0
    d.find_element(_by("CSS_SELECTOR"), "input[id^=reason-retry]").send_keys("DUO outage over")
    click(d, "XPATH", "//button[starts-with(normalize-space(.), 'Retry delivery')]")
    assert "queued again" in d.page_source
    assert wait_until(lambda: state() == "delivered", 30), state()
    d.refresh()
    assert "State <span class=\"st st-delivered\">delivered</span>" in d.page_source
    message_url = d.current_url.split("?")[0]
    d.get(url + "/console/dead-letters")
    check_axe(d)
    d.get(url + "/console/rules")
    check_axe(d)
    shot(d, "rules")

    # A viewer: no personal data in any page source or API answer (also of a claim, with the
    # debtor's address), no actions, refused by the API.
    claim = _hand_over_a_claim(chain, gp)
    debtor = claim.debiteur
    personal += [v for v in (debtor.bsn, debtor.v_nummer, debtor.geslachtsnaam, debtor.voornamen,
                             debtor.geboortedatum.isoformat(), debtor.adres.straat, debtor.adres.postcode) if v]
    claim_id = store.query("SELECT id FROM messages WHERE message_key = :k", {"k": claim.vordering_id})[0][0]
    sign_in(d, url, "victor")
    mid = message_url.rsplit("/", 1)[1]
    for path in ["/console/", "/console/messages", f"/console/messages/{mid}", f"/console/messages/{claim_id}",
                 "/console/audit", "/console/dead-letters", "/console/rules", "/api/v1/dashboard", "/api/v1/messages",
                 f"/api/v1/messages/{mid}", f"/api/v1/messages/{key}", f"/api/v1/messages/{claim_id}",
                 "/api/v1/audit", "/api/v1/rules"]:
        d.get(url + path)
        assert not _leaks(personal, d.page_source), (path, _leaks(personal, d.page_source))
    d.get(url + f"/console/messages/{claim_id}")
    assert "*******" + debtor.bsn[-2:] in d.page_source and "straat&gt;***&lt;" in d.page_source
    d.get(url + "/console/messages")
    d.find_element(_by("ID"), "person").send_keys(p.bsn)
    click(d, "CSS_SELECTOR", "form.search button")
    assert f'href="/console/messages/{mid}"' in d.page_source and p.bsn not in d.page_source + d.current_url
    d.get(url + f"/console/messages/{mid}")
    assert not d.find_elements(_by("XPATH"), "//button[contains(., 'Retry') or contains(., 'personal data')]")
    # The page has no retry form for a viewer; a hand-made one (with the viewer's own token) is refused.
    delivery = store.query("SELECT id FROM outbox WHERE idempotency_key = :k", {"k": key})[0][0]
    d.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "f.appendChild(document.querySelector('input[name=csrf]').cloneNode());"
        "const b = document.createElement('button'); b.id = 'forged'; b.textContent = 'forged'; f.appendChild(b);"
        "document.querySelector('main').appendChild(f);", f"/console/deliveries/{delivery}/resolve")
    click(d, "ID", "forged")
    assert "only an operator with the operator role" in d.page_source

    # personal-data unmasks this one message with a reason and finds the audit entry.
    sign_in(d, url, "petra")
    d.get(url + f"/console/messages/{mid}")
    d.find_element(_by("ID"), "unmask-reason").send_keys("citizen asked, ticket 2013")
    click(d, "XPATH", "//button[normalize-space(.)='Show personal data']")
    assert p.bsn in d.page_source and "(in clear)" in d.page_source
    d.get(url + "/console/audit")
    check_axe(d)
    shot(d, "audit")
    rows = [r.text for r in d.find_elements(_by("CSS_SELECTOR"), "tbody tr")]
    assert any("petra" in r and "show-personal-data" in r and "ticket 2013" in r and f"message:{mid}" in r
               for r in rows), rows
    assert any("olga" in r and "retry" in r and "DUO outage over" in r for r in rows), rows
    assert any("olga" in r and "csrf-refused" in r for r in rows), rows
    assert any("victor" in r and "resolve" in r and "refused" in r for r in rows), rows
    # Nothing in the audit log can be changed from the console: its page has no form that posts.
    assert not d.find_elements(_by("CSS_SELECTOR"), "main form[method=post]")


def test_the_axe_check_fails_on_a_page_with_violations(rig: dict[str, Any]) -> None:
    """The check above can fail: a page without a language, with an unlabelled field and an image
    without text gives violations."""
    d = rig["driver"]
    d.get("data:text/html,<title>x</title><main><img src='x.png'><input id='q'></main>")
    with pytest.raises(AssertionError) as failed:
        check_axe(d)
    for rule in ("html-has-lang", "image-alt", "label"):
        assert rule in str(failed.value), failed.value

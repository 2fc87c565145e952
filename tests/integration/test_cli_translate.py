"""`gateway translate` and `gateway check-config` as an operator or a CI job runs them."""

from __future__ import annotations

import datetime as dt
import json

from lxml import etree
from typer.testing import CliRunner

from gateway.cli import app
from tests.paths import REPO, SAMPLES
from tests.pki_fixtures import VALID_UNTIL

runner = CliRunner()


def test_translate_the_ind_sample_envelope_gives_the_duo_sample():
    result = runner.invoke(app, ["translate", str(SAMPLES / "ind-ontvangmelding-request.xml"),
                                 "--received-at", "2026-11-02T09:14:05+01:00",
                                 "--config", str(REPO / "config" / "gateway.example.toml")])
    assert result.exit_code == 0, result.output
    produced = etree.fromstring(result.stdout.encode())
    expected = etree.parse(str(SAMPLES / "duo-inburgeraarmelding.xml")).getroot()
    ns = {"duo": "urn:nl:duo:inburgering:v1"}
    for el in (produced, expected):
        for volatile in ("duo:berichtId", "duo:beoordeling/duo:regelsetVersie"):
            el.find(volatile, ns).text = "X"
    assert etree.tostring(produced, method="c14n", exclusive=True) == \
        etree.tostring(expected, method="c14n", exclusive=True)


def test_translate_refuses_a_bad_file_naming_it(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<not-closed>")
    result = runner.invoke(app, ["translate", str(bad), "--config", str(REPO / "config" / "gateway.example.toml")])
    assert result.exit_code == 2
    assert "bad.xml" in result.output and "MALFORMED" in result.output


def test_check_config_reports_certificate_expiry(chain):
    result = runner.invoke(app, ["check-config", "--json", "--config", str(chain.config_file)])
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    whats = [i["what"] for i in report["items"]]
    assert "gateway certificate" in whats
    assert any(w.startswith("partner duo certificate") for w in whats)
    assert all(i["level"] != "error" for i in report["items"])


def test_check_config_warns_inside_the_expiry_window(chain):
    # The test PKI is valid until pki_fixtures.VALID_UNTIL: a window reaching a day past it warns.
    window = (VALID_UNTIL - dt.datetime.now(dt.UTC)).days + 2
    result = runner.invoke(app, ["check-config", "--json", "--config", str(chain.config_file)],
                           env={"GATEWAY__TLS__EXPIRY_WARNING_DAYS": str(window)})
    report = json.loads(result.stdout)
    assert any(i["level"] == "warning" and "expires on" in i["message"] for i in report["items"])

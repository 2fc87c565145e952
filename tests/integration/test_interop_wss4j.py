"""Interoperability with Apache WSS4J (Debian's libwss4j-java, 1.6), both directions, through the
real IND endpoint over mutual TLS (issue 21).

WSS4J is what CXF clients sign with. The Java helper tests/interop/Wss4jTool.java is compiled with
javac into a temporary directory once per session and run once per batch (a JVM start and the first
signature cost about a second): one run signs every notification, one run verifies every
acknowledgement. The notifications are built here, unsigned, and pushed with IND's TLS identity.

- signed by WSS4J with its default settings (ec:InclusiveNamespaces PrefixLists in SignedInfo and
  every Reference) and with the prefix lists off: accepted, acknowledged, delivered to DUO once;
- the gateway's acknowledgements verify in WSS4J, with Body, Timestamp, To, Action, MessageID and
  RelatesTo each covered by the signature where they belong, and RelatesTo = the request's MessageID;
- a WSS4J-signed notification changed after signing: refused, SIGNATURE; one signed with a
  certificate of another CA (IND's name): refused, CERTIFICATE; an acknowledgement changed after
  signing: refused by WSS4J.

scripts/test installs libwss4j-java and default-jdk-headless (as it installs xmlsec1).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.ind import codec as ind_codec
from gateway.mapping.ind_to_duo import bericht_id_for
from gateway.sandbox import start_chain, wait_until
from gateway.wire import soap
from tests.e2e.helpers import meldingen as unbroken_meldingen

TOOL_SOURCE = Path(__file__).resolve().parents[1] / "interop" / "Wss4jTool.java"
JAVA_LIB = Path("/usr/share/java")
# WSS4J and what it needs at run time; slf4j-nop keeps xmlsec's logging quiet.
JARS = ("wss4j.jar", "xmlsec.jar", "commons-logging.jar", "slf4j-api.jar", "slf4j-nop.jar")
NS = {"soap": soap.SOAP_NS, "ec": "http://www.w3.org/2001/10/xml-exc-c14n#", "ds": soap.DS_NS}
# Contracts revision 2 (WB014): the acknowledgement also signs its wsse11:SignatureConfirmation.
ACK_PARTS = ["Body", "Timestamp", "To", "Action", "MessageID", "RelatesTo", "SignatureConfirmation"]

PER_SETTING = 4  # notifications signed with each WSS4J setting

# The rows of docs/interop.md's matrix that this module proves: (peer, profile, direction, settings,
# result, test). tests/integration/test_interop_matrix.py keeps the document equal to these rows.
WSS4J = "Apache WSS4J 1.6.19 (CXF)"
MATRIX = [
    (WSS4J, "ind-wus", "peer signs, gateway verifies",
     "defaults: rsa-sha256, sha256, exc-c14n with InclusiveNamespaces PrefixList on SignedInfo and every "
     "Reference, BST direct reference", "accepted, delivered once",
     "test_wss4j_signed_notifications_are_accepted_and_delivered_once"),
    (WSS4J, "ind-wus", "peer signs, gateway verifies", "PrefixLists off (wsiBSPCompliant false)",
     "accepted, delivered once", "test_wss4j_signed_notifications_are_accepted_and_delivered_once"),
    (WSS4J, "ind-wus", "gateway signs, peer verifies", "acknowledgements; trust: the chain CA",
     "verified; 6 parts in place; RelatesTo = request MessageID", "test_acknowledgements_verify_in_wss4j"),
    (WSS4J, "ind-wus", "gateway signs, peer verifies", "acknowledgement changed after signing",
     "refused by WSS4J", "test_acknowledgement_changed_after_signing_is_refused_by_wss4j"),
    (WSS4J, "ind-wus", "peer signs, gateway verifies", "changed after signing", "refused: SIGNATURE",
     "test_wss4j_signed_hostile_notifications_are_refused"),
    (WSS4J, "ind-wus", "peer signs, gateway verifies", "certificate of another CA", "refused: CERTIFICATE",
     "test_wss4j_signed_hostile_notifications_are_refused"),
]


def _classpath() -> str:
    return ":".join(str(JAVA_LIB / jar) for jar in JARS)


@pytest.fixture(scope="session")
def wss4j_tool(tmp_path_factory) -> Path:
    """Wss4jTool compiled into a temporary directory; the directory."""
    missing = [str(JAVA_LIB / jar) for jar in JARS if not (JAVA_LIB / jar).exists()]
    missing += [tool for tool in ("java", "javac") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the WSS4J interop tests need {', '.join(missing)}: apt-get install libwss4j-java "
                    "default-jdk-headless (scripts/test does)")
    out = tmp_path_factory.mktemp("wss4j-tool")
    done = subprocess.run(["javac", "-nowarn", "-encoding", "UTF-8", "-d", str(out), "-cp", _classpath(),
                           str(TOOL_SOURCE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def run_wss4j(tool: Path, work: Path, jobs: list[list[str]]) -> list[dict[str, Any]]:
    """Run one batch of jobs in one JVM; one report per job, in order."""
    jobs_file = work / f"jobs-{len(list(work.glob('jobs-*')))}.tsv"
    jobs_file.write_text("".join("\t".join(job) + "\n" for job in jobs))
    done = subprocess.run(["java", "-cp", f"{_classpath()}:{tool}", "Wss4jTool", str(jobs_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [r["job"] for r in reports] == list(range(len(jobs))), done.stdout + done.stderr
    return reports


@dataclass
class Sent:
    setting: str  # "on" (WSS4J's default prefix lists), "off", "tampered", "other-ca"
    melding: Any
    request: bytes
    status: int
    answer: bytes


@pytest.fixture(scope="module")
def exchange(tmp_path_factory, pki_paths, wss4j_tool):
    """One chain; every notification signed in one WSS4J run, pushed; the answers verified in one run."""
    directory = tmp_path_factory.mktemp("wss4j")
    chain = start_chain(directory / "chain", dsn=f"sqlite:///{directory / 'gateway.db'}", pki_paths=pki_paths)
    try:
        work = directory / "files"
        work.mkdir()
        settings = ["on"] * PER_SETTING + ["off"] * PER_SETTING + ["tampered", "other-ca"]
        meldingen = unbroken_meldingen(len(settings), seed=2121)  # volgnummers 1.. without gaps
        jobs = []
        for i, (setting, m) in enumerate(zip(settings, meldingen, strict=False)):
            env = soap.build_envelope(ind_codec.encode_melding(m), to=chain.ind_endpoint,
                                      action=ind_codec.ACTION_ONTVANG, message_id=f"urn:uuid:{m.melding_id}")
            (work / f"unsigned-{i}.xml").write_bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))
            key, cert = (pki_paths["ind-other-ca"] if setting == "other-ca"
                         else (pki_paths["ind-key"], pki_paths["ind"]))
            jobs.append(["sign", str(key), str(cert), "off" if setting == "off" else "on",
                         str(work / f"unsigned-{i}.xml"), str(work / f"signed-{i}.xml")])
        reports = run_wss4j(wss4j_tool, work, jobs)
        assert all(r["ok"] for r in reports), reports

        sent = []
        for i, (setting, m) in enumerate(zip(settings, meldingen, strict=False)):
            data = (work / f"signed-{i}.xml").read_bytes()
            if setting == "tampered":
                name = m.persoon.geslachtsnaam.encode()
                assert data.count(b">" + name + b"<") == 1
                data = data.replace(b">" + name + b"<", b">" + name + b"x<")
            status, answer = chain.ind.push_raw(chain.ind_endpoint, data)
            sent.append(Sent(setting, m, data, status, answer))

        accepted = [s for s in sent if s.setting in ("on", "off")]
        assert wait_until(lambda: all(chain.duo.count(bericht_id_for(s.melding.melding_id)) >= 1 for s in accepted),
                          timeout=30)
        # The acknowledgements, and one changed after signing, verified by WSS4J in one run.
        verify_jobs = []
        for i, s in enumerate(accepted):
            (work / f"ack-{i}.xml").write_bytes(s.answer)
            verify_jobs.append(["verify", str(pki_paths["ca"]), str(work / f"ack-{i}.xml")])
        melding_id = accepted[0].melding.melding_id.encode()
        changed = accepted[0].answer.replace(b">" + melding_id + b"<", b">" + melding_id[:-1] + (b"1<" if melding_id.endswith(b"0") else b"0<"))
        assert changed != accepted[0].answer
        (work / "ack-changed.xml").write_bytes(changed)
        verify_jobs.append(["verify", str(pki_paths["ca"]), str(work / "ack-changed.xml")])
        verified = run_wss4j(wss4j_tool, work, verify_jobs)
        yield {"chain": chain, "sent": sent, "verified": verified[:-1], "changed": verified[-1]}
    finally:
        chain.stop()


def _sent(exchange, setting: str) -> list[Sent]:
    return [s for s in exchange["sent"] if s.setting == setting]


@pytest.mark.parametrize("setting", ["on", "off"], ids=["wss4j-defaults", "prefix-lists-off"])
def test_wss4j_signed_notifications_are_accepted_and_delivered_once(exchange, setting):
    sent = _sent(exchange, setting)
    assert len(sent) == PER_SETTING
    for s in sent:
        root = etree.fromstring(s.request)
        lists = root.findall(".//ds:SignedInfo//ec:InclusiveNamespaces", NS)
        references = root.findall(".//ds:SignedInfo/ds:Reference", NS)
        # WSS4J's defaults put a PrefixList in SignedInfo and in every Reference; "off" none.
        assert len(lists) == (len(references) + 1 if setting == "on" else 0)
        assert s.status == 200, s.answer[:500]
        payload = etree.fromstring(s.answer).find("soap:Body", NS)[0]
        assert payload.tag == f"{{{ind_codec.IND_NS}}}Ontvangstbevestiging"
        assert payload.findtext(f"{{{ind_codec.IND_NS}}}meldingId") == s.melding.melding_id
    chain = exchange["chain"]
    for s in sent:
        assert chain.duo.count(bericht_id_for(s.melding.melding_id)) == 1


def test_acknowledgements_verify_in_wss4j(exchange):
    accepted = [s for s in exchange["sent"] if s.setting in ("on", "off")]
    for s, report in zip(accepted, exchange["verified"], strict=True):
        assert report["ok"], report
        assert sorted(report["signed"]) == sorted(ACK_PARTS), report  # each once, where it belongs
        assert report["relatesTo"] == f"urn:uuid:{s.melding.melding_id}"  # the request's MessageID
        assert report["subject"].startswith("CN=gateway")


def test_acknowledgement_changed_after_signing_is_refused_by_wss4j(exchange):
    report = exchange["changed"]
    assert not report["ok"]
    assert "WSSecurityException" in report["error"] and "signature" in report["error"], report


@pytest.mark.parametrize("setting, faultcode, code", [
    ("tampered", "wsse:FailedCheck", "SIGNATURE"),
    ("other-ca", "wsse:InvalidSecurity", "CERTIFICATE"),
])
def test_wss4j_signed_hostile_notifications_are_refused(exchange, setting, faultcode, code):
    (s,) = _sent(exchange, setting)
    assert s.status == 500, s.answer[:500]
    fault = etree.fromstring(s.answer).find("soap:Body/soap:Fault", NS)
    assert fault.findtext("faultcode") == faultcode
    assert fault.findtext("detail/code") == code
    assert exchange["chain"].duo.count(bericht_id_for(s.melding.melding_id)) == 0

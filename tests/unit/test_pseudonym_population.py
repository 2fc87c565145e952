"""Pseudonymization over a generated population of 1,200 people: no real BSN, V-number, name or full
birth date survives, and every person's assessment (indication, rule) stays the same.

A third of the people are born within a few days of an age threshold of the shipped rule set
(the minimum age and the pension age) on their ``ingangsdatum``, and dates on days 29-31 and in
February are common: the cases where a careless method keeps the date or flips an age test.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import random
import re

from lxml import etree

from adapters.duo import codec as duo_codec
from adapters.ind import codec as ind_codec
from adapters.ind.simulator import generate_meldingen
from adapters.testpeople import random_bsn
from gateway.archive.format import Entry
from gateway.archive.pseudonym import ArchivePseudonymizer, SandboxKeys, shipped_rulesets
from gateway.core.models import IndMelding
from gateway.mapping.ind_to_duo import to_inburgeraarmelding
from gateway.rules import engine as rules

KEY = b"population-test-key-0123456789abcdef"
COUNT = 1200
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def _near_threshold(rng: random.Random, m: IndMelding, ruleset: rules.RuleSet) -> str:
    """A birth date within three days of reaching the minimum or the pension age on ingangsdatum."""
    on = m.verblijf.ingangsdatum
    regime = ruleset.regime_for(on)
    age = rng.choice([regime.minimum, ruleset.maximum_age(regime, on)])
    year, month = divmod(on.year * 12 + on.month - 1 - age.jaren * 12 - age.maanden, 12)
    boundary = dt.date(year, month + 1, min(on.day, calendar.monthrange(year, month + 1)[1]))
    return (boundary + dt.timedelta(days=rng.randint(-3, 3))).isoformat()


def _population() -> list[IndMelding]:
    rng = random.Random(19)
    ruleset = rules.load_dir(rules_dir())["inburgeringsplicht-2026.1"]
    people = []
    for i, m in enumerate(generate_meldingen(COUNT, 19, now=NOW)):
        p = m.persoon
        birth = p.geboortedatum
        if i % 3 == 0:
            birth = _near_threshold(rng, m, ruleset)
        elif i % 3 == 1 and birth[5:] != "00-00" and birth[8:] != "00":
            last = calendar.monthrange(int(birth[:4]), int(birth[5:7]))[1]
            birth = f"{birth[:8]}{rng.randint(28, last)}"
        unique = "".join(chr(ord("a") + (i // 26 ** k) % 26) for k in range(3))
        person = dataclasses.replace(p, bsn=random_bsn(rng), v_nummer=f"{rng.randrange(10**10):010d}",
                                     geslachtsnaam=f"Q{unique}xo{p.geslachtsnaam.lower()}", voornamen=f"Zy{unique}",
                                     geboortedatum=birth)
        people.append(dataclasses.replace(m, persoon=person))
    return people


def rules_dir() -> str:
    from gateway.core.config import Config

    return Config().rules.directory


def _entries(people: list[IndMelding], ruleset: rules.RuleSet) -> list[Entry]:
    entries = []
    for n, m in enumerate(people):
        t = NOW.timestamp() + n
        inbound = etree.tostring(ind_codec.encode_melding(m), encoding="utf-8")
        duo = to_inburgeraarmelding(m, received_at=NOW, ruleset=ruleset)
        outbound = etree.tostring(duo_codec.encode_inburgeraarmelding(duo), encoding="utf-8")
        base = {"route": "ind-duo", "t": t, "at": "", "http_status": 200, "outcome": "accepted"}
        entries.append(Entry({**base, "seq": 2 * n + 1, "kind": "inbound", "partner": "ind",
                              "operation": "OntvangMelding", "message_key": m.melding_id}, inbound))
        entries.append(Entry({**base, "seq": 2 * n + 2, "kind": "outbound", "partner": "duo",
                              "operation": "InburgeraarMelding", "message_key": duo.bericht_id}, outbound))
    return entries


def test_a_population_keeps_no_personal_data_and_every_assessment(tmp_path) -> None:
    people = _population()
    rulesets = shipped_rulesets()
    ruleset = next(r for r in rulesets if r.name == "inburgeringsplicht-2026.1")
    entries = _entries(people, ruleset)
    sandbox = SandboxKeys.make(tmp_path, NOW - dt.timedelta(days=2))
    ArchivePseudonymizer(KEY, sandbox, rulesets).run(entries)

    text = b"\n".join(e.payload or b"" for e in entries).decode()
    numbers, words = set(re.findall(r"\d+", text)), set(re.findall(r"[A-Za-z]+", text))
    for m in people:
        p = m.persoon
        assert p.bsn not in numbers and p.v_nummer not in numbers
        assert p.geslachtsnaam not in words and p.voornamen not in words
    full_dates = [m.persoon.geboortedatum for m in people if re.fullmatch(r"\d{4}-(?!00)\d\d-(?!00)\d\d",
                                                                          m.persoon.geboortedatum)]
    assert len(full_dates) > COUNT * 0.8
    for entry, m in zip(entries[::2], people, strict=True):
        fake = ind_codec.decode_melding(etree.fromstring(entry.payload))
        original, pseudonym = m.persoon.geboortedatum, fake.persoon.geboortedatum
        if original in full_dates:
            assert pseudonym != original and dt.date.fromisoformat(pseudonym)
        else:
            assert pseudonym == original  # incomplete: stays incomplete, and identifies less
        for rs in rulesets:
            assert _verdict(rs, fake) == _verdict(rs, m), (original, pseudonym, m.verblijf.ingangsdatum)
    for entry, inbound in zip(entries[1::2], entries[::2], strict=True):
        duo = duo_codec.decode_inburgeraarmelding(etree.fromstring(entry.payload))
        fake = ind_codec.decode_melding(etree.fromstring(inbound.payload))
        assert duo.persoon.bsn == fake.persoon.bsn
        d = duo.persoon.geboortedatum
        assert f"{d.jaar or 0:04d}-{d.maand or 0:02d}-{d.dag or 0:02d}" == fake.persoon.geboortedatum


def _verdict(ruleset: rules.RuleSet, m: IndMelding) -> rules.Verdict:
    return ruleset.evaluate(rules.RuleInput(
        wettelijke_grondslag=m.verblijf.wettelijke_grondslag, verblijfsdoel=m.verblijf.verblijfsdoel,
        nationaliteiten=m.persoon.nationaliteiten, geboortedatum=m.persoon.geboortedatum,
        ingangsdatum=m.verblijf.ingangsdatum))

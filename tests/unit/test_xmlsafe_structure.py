"""xmlsafe.parse's structure checks: nesting depth, XInclude and entity references are refused."""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.core.errors import MalformedInput
from gateway.wire import xmlsafe


def _nested(levels: int) -> bytes:
    return b"<a>" * levels + b"x" + b"</a>" * levels


@pytest.mark.parametrize("levels", [1, 2, xmlsafe.MAX_DEPTH - 1, xmlsafe.MAX_DEPTH])
def test_nesting_up_to_the_limit_is_taken(levels: int) -> None:
    assert xmlsafe.parse(_nested(levels)).tag == "a"


@pytest.mark.parametrize("levels", [xmlsafe.MAX_DEPTH + 1, xmlsafe.MAX_DEPTH + 2, 200])
def test_nesting_past_the_limit_is_refused(levels: int) -> None:
    with pytest.raises(MalformedInput, match="nesting is deeper than 64 levels"):
        xmlsafe.parse(_nested(levels))


def test_depth_counts_elements_only() -> None:
    # Comments and processing instructions are not levels.
    levels = xmlsafe.MAX_DEPTH
    doc = b"<a>" * levels + b"<!--c--><?pi x?>" + b"</a>" * levels
    assert xmlsafe.parse(doc).tag == "a"


@pytest.mark.parametrize("ns", ["http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude"])
def test_xinclude_anywhere_is_refused(ns: str) -> None:
    for doc in (f'<a><b><xi:include xmlns:xi="{ns}" href="file:///etc/passwd"/></b></a>', f'<a xmlns="{ns}"/>'):
        with pytest.raises(MalformedInput, match="XInclude is not allowed"):
            xmlsafe.parse(doc.encode())


def test_an_entity_reference_is_refused_and_the_first_offender_named() -> None:
    # parse refuses a DOCTYPE first, so no entity reference reaches a parsed tree; the check
    # behind it is tried on trees built by hand.
    entity_first = etree.Element("a")
    entity_first.append(etree.Entity("e"))
    etree.SubElement(entity_first, "{http://www.w3.org/2001/XInclude}include")
    with pytest.raises(MalformedInput, match="entity references are not allowed"):
        xmlsafe._check_structure(entity_first)
    xinclude_first = etree.Element("a")
    etree.SubElement(etree.SubElement(xinclude_first, "b"), "{http://www.w3.org/2003/XInclude}include")
    xinclude_first.append(etree.Entity("e"))
    with pytest.raises(MalformedInput, match="XInclude is not allowed"):
        xmlsafe._check_structure(xinclude_first)

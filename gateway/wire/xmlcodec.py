"""Small helpers the XML codecs share: one ``Vocabulary`` per partner namespace.

Codecs build and read elements of one namespace with one prefix; these helpers keep that
spelling in one place. Decoders expect schema-valid input (``gateway.wire.xmlsafe.validate`` first);
when a value still does not parse, ``values_hidden`` refuses without quoting the value.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TypeVar

from lxml import etree

from gateway.core.errors import MalformedInput

__all__ = ["Vocabulary", "parse_date", "opt_date", "values_hidden"]

_T = TypeVar("_T")


class Vocabulary:
    """Element helpers for one namespace, written with one prefix."""

    def __init__(self, namespace: str, prefix: str) -> None:
        self.namespace = namespace
        self.prefix = prefix
        self.nsmap = {prefix: namespace}

    def q(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}"

    def root(self, name: str) -> etree._Element:
        return etree.Element(self.q(name), nsmap=self.nsmap)

    def sub(self, parent: etree._Element, name: str) -> etree._Element:
        return etree.SubElement(parent, self.q(name))

    def add(self, parent: etree._Element, name: str, value: object) -> etree._Element:
        el = self.sub(parent, name)
        el.text = value.isoformat() if isinstance(value, dt.date) else str(value)
        return el

    def add_opt(self, parent: etree._Element, name: str, value: object | None) -> None:
        if value is not None:
            self.add(parent, name, value)

    def expect(self, el: etree._Element, name: str) -> None:
        if el.tag != self.q(name):
            raise MalformedInput(f"expected {self.prefix}:{name}", stage="processing")

    def child(self, el: etree._Element, name: str) -> etree._Element:
        # The first child with this tag, as find() gives it, at half the cost (no path to parse).
        found = next(el.iterchildren(self.q(name)), None)
        if found is None:
            raise MalformedInput(f"{self.prefix}:{name} is missing", stage="processing")
        return found

    def text(self, el: etree._Element, name: str) -> str:
        return (self.child(el, name).text or "").strip()

    def opt_text(self, el: etree._Element, name: str) -> str | None:
        found = next(el.iterchildren(self.q(name)), None)
        return None if found is None else (found.text or "").strip()

    def opt_int(self, el: etree._Element, name: str) -> int | None:
        text = self.opt_text(el, name)
        return None if text is None else int(text)

    def values_hidden(self, decode: Callable[[etree._Element], _T]) -> Callable[[etree._Element], _T]:
        return values_hidden(decode, self.prefix)


def parse_date(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])  # drop an optional zone suffix of xs:date


def opt_date(text: str | None) -> dt.date | None:
    return None if text is None else parse_date(text)


def values_hidden(decode: Callable[[etree._Element], _T], prefix: str) -> Callable[[etree._Element], _T]:
    """Decoders expect schema-valid input; if a value still does not parse, say so without the value."""

    @functools.wraps(decode)
    def wrapper(el: etree._Element) -> _T:
        try:
            return decode(el)
        except ValueError:
            raise MalformedInput(f"{prefix}: a value does not fit its type; validate against the XSD first",
                                 stage="processing") from None

    return wrapper

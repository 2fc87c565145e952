"""Hardened XML parsing and the partners' pinned schemas.

Every byte that comes from outside is parsed here: no DTD, no entity expansion, no network,
no XInclude, a size cap and a depth cap. The XSDs are read from ``xsd/`` (checked against
``xsd/SHA256SUMS``) and compiled once per process with lxml, which validates about 60x faster
than xmlschema's pure-Python validator.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from lxml import etree

from gateway.core.errors import ConfigError, MalformedInput, OversizeInput, SchemaInvalid

__all__ = [
    "XSD_DIR",
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "parse",
    "schema",
    "validate",
    "verify_manifest",
    "exc_c14n",
    "sha256_b64",
]

# Package data (gateway/xsd links to the checkout's xsd/; a wheel carries the files themselves).
XSD_DIR = (Path(__file__).resolve().parents[1] / "xsd").resolve()
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64

IND_XSD = "ind-vergunningmelding-v1.xsd"
DUO_XSD = "duo-inburgering-v1.xsd"

_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers are not thread-safe; one per thread.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            dtd_validation=False,
            load_dtd=False,
            remove_comments=False,
            remove_pis=False,
            huge_tree=False,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def parse(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise a specific refusal.

    Refuses: more than ``max_bytes``; any DOCTYPE (so no DTD, internal or external, and no
    entity declarations); XInclude elements; nesting deeper than ``MAX_DEPTH``.
    """
    if len(data) > max_bytes:
        raise OversizeInput(f"the message is larger than the limit of {max_bytes} bytes", stage="receiving")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedInput(f"not well-formed XML: {exc.msg} (line {exc.lineno})", stage="receiving") from exc
    except ValueError as exc:
        raise MalformedInput(f"not acceptable XML: {exc}", stage="receiving") from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None or tree.docinfo.externalDTD is not None:
        raise MalformedInput("a DOCTYPE (DTD or entity declaration) is not allowed", stage="receiving")
    _check_structure(root)
    return root


_XINCLUDE_NS = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")


#: Elements nested deeper than MAX_DEPTH: those at MAX_DEPTH + 1 below the root (the root is level 1).
_TOO_DEEP = etree.XPath("*/" * (MAX_DEPTH - 1) + "*")


def _check_structure(root: etree._Element) -> None:
    # lxml walks and matches in C (a Python loop over every element cost ~0.3 ms a message);
    # one walk for both kinds keeps the first offender in document order.
    found = next(root.iter(etree.Entity, *(f"{{{ns}}}*" for ns in _XINCLUDE_NS)), None)
    if found is not None and isinstance(found, etree._Entity):
        raise MalformedInput("entity references are not allowed", stage="receiving")
    if found is not None:
        raise MalformedInput("XInclude is not allowed", stage="receiving")
    if _TOO_DEEP(root):
        raise MalformedInput(f"nesting is deeper than {MAX_DEPTH} levels (the limit)", stage="receiving")


def verify_manifest(xsd_dir: Path = XSD_DIR) -> dict[str, str]:
    """Check every vendored partner file against ``SHA256SUMS``; return name -> digest."""
    manifest = xsd_dir / "SHA256SUMS"
    if not manifest.exists():
        raise ConfigError("the schema manifest is missing", file=str(manifest))
    digests: dict[str, str] = {}
    for lineno, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        expected, name = line.split(maxsplit=1)
        path = xsd_dir / name.strip()
        if not path.exists():
            raise ConfigError(f"schema file {name} named in the manifest is missing", file=str(manifest), line=lineno)
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise ConfigError(f"schema file {name} differs from the vendored version "
                              f"(sha256 {actual}, expected {expected})", file=str(manifest), line=lineno)
        digests[name.strip()] = actual
    return digests


#: Held while libxml2 compiles any schema: compiling in two threads at once (its lazy global
#: type tables) fails with "Document is not valid XML Schema" or crashes the process.
SCHEMA_COMPILE_LOCK = threading.RLock()


def schema(name: str) -> etree.XMLSchema:
    """The compiled schema ``xsd/<name>``; compiled once per process."""
    with SCHEMA_COMPILE_LOCK:
        return _compiled(name)


@cache
def _compiled(name: str) -> etree.XMLSchema:
    verify_manifest()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    doc = etree.parse(str(XSD_DIR / name), parser)
    return etree.XMLSchema(doc)


_schema_lock = threading.Lock()


def validate(element: etree._Element, name: str, *, partner: str | None = None) -> None:
    """Validate ``element`` (a message root) against ``xsd/<name>``; raise SchemaInvalid."""
    xsd = schema(name)
    # lxml's XMLSchema keeps its error log on the object: serialize validations across threads.
    with _schema_lock:
        ok = xsd.validate(element)
        if ok:
            return
        err = xsd.error_log.last_error
    where = err.path if err is not None else None
    msg = err.message if err is not None else "schema validation failed"
    raise SchemaInvalid(f"schema: {_scrub(msg)}", partner=partner, stage="processing", path=where)


def _scrub(message: str) -> str:
    """Drop quoted values from a validator message: they may be personal data."""
    out = []
    quoted = False
    for part in message.split("'"):
        out.append("…" if quoted else part)
        quoted = not quoted
    return "'".join(out)


def exc_c14n(element: etree._Element, inclusive_prefixes: Sequence[str] | None = None) -> bytes:
    """Exclusive canonical XML 1.0, without comments, of ``element`` where it is.

    ``inclusive_prefixes``: exc-c14n's InclusiveNamespaces PrefixList (``gateway.security.c14n``).
    """
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False,
                          inclusive_ns_prefixes=list(inclusive_prefixes) if inclusive_prefixes else None)


def sha256_b64(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")

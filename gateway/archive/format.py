"""Record: the self-contained archive that ``gateway export`` writes and ``gateway replay`` reads.

The format is described in ``docs/archive-format.md``. In short: a directory (or a ``.tar`` of
one) with ``manifest.json``, ``index.jsonl`` (one JSON object per exchange, in time order),
``payloads/`` (the exact bytes) and ``certs/`` (public certificates to verify the signatures).

Reading checks everything before anything is used: each index line parses, each payload file is
there with the sha256 the index names, and the index has the digest the manifest names. The first
problem raises ``DamagedArchive`` naming the entry (seq and file).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "Entry", "Archive", "DamagedArchive", "write_archive", "read_archive", "collect",
           "KIND_ORDER", "gateway_version", "TargetRefused", "check_target",
           "foreign_files"]

FORMAT = "chain-gateway-archive/1"
#: Ties in time are broken so that a message is taken in before what it causes.
KIND_ORDER = {"inbound": 0, "feed": 1, "answer": 2, "outbound": 3}
_ROUTE_OF_PARTNER = {"ind": "ind-duo", "duo": "duo-cjib"}


class DamagedArchive(Exception):
    """The archive cannot be trusted; ``entry`` names where (seq and file)."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"damaged archive: {entry}: {reason}")
        self.entry = entry
        self.reason = reason


@dataclass
class Entry:
    """One exchange: its index fields (without file names and digests) and its bytes."""

    meta: dict[str, Any]
    payload: bytes | None = None
    response: bytes | None = None

    @property
    def seq(self) -> int:
        return int(self.meta["seq"])

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def at(self) -> float:
        return float(self.meta["t"])


@dataclass
class Archive:
    manifest: dict[str, Any]
    entries: list[Entry]
    certs: dict[str, bytes] = field(default_factory=dict)  # file name -> PEM


# ---------------------------------------------------------------- writing

def gateway_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("chain-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


def _ext(data: bytes) -> str:
    head = data.lstrip()[:1]
    return "xml" if head == b"<" else "json" if head in (b"{", b"[") else "bin"


def _file_fields(prefix: str, data: bytes) -> dict[str, str]:
    # Named by content: a repeat (same bytes again) shares its file, which keeps archives small.
    digest = hashlib.sha256(data).hexdigest()
    return {prefix: f"payloads/{digest[:24]}.{_ext(data)}", f"{prefix}_sha256": digest}


def index_lines(entries: list[Entry]) -> list[str]:
    lines = []
    for e in entries:
        row = dict(e.meta)
        if e.payload is not None:
            row.update(_file_fields("payload", e.payload))
        if e.response is not None:
            row.update(_file_fields("response", e.response))
        # seq and kind first, so that even a line cut short still says which entry it was.
        first = {"seq": row.pop("seq"), "kind": row.pop("kind")}
        lines.append(json.dumps({**first, **dict(sorted(row.items()))}, ensure_ascii=False))
    return lines


class TargetRefused(Exception):
    """The export target may not be written: it holds something the gateway did not write, or an
    archive that is to be replaced only when asked (``--force``)."""


def write_archive(target: Path, entries: list[Entry], manifest: dict[str, Any],
                  certs: dict[str, bytes], *, replace: bool = False) -> dict[str, Any]:
    """Write the archive at ``target`` (a ``.tar`` name gives a tar file); returns the manifest as written.

    Never destroys what it did not write: the archive is written beside the target and then renamed
    into place. An existing target must be an empty directory, or (with ``replace``) an archive
    that holds only the files an archive consists of; anything else raises ``TargetRefused``.
    """
    check_target(target, replace=replace)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        full = _write_dir(work / "archive", entries, manifest, certs)
        if target.suffix == ".tar":
            with tarfile.open(work / "archive.tar", "w") as tar:
                tar.add(work / "archive", arcname=".")
            os.replace(work / "archive.tar", target)  # atomic: the old tar stays whole until this moment
        else:
            _swap_in(work / "archive", target, work / "old")
    finally:
        for ours in (work / "archive", work / "archive.tar"):  # what this call wrote
            if ours.is_dir():
                shutil.rmtree(ours)
            else:
                ours.unlink(missing_ok=True)
        _remove_archive(work / "old")
        _rmdir_if_empty(work)
    return full


def _swap_in(new: Path, target: Path, old: Path) -> None:
    # rename() replaces an empty directory in one step; a full one (an archive, checked) is moved
    # aside first, and only its archive files are removed after the new one is in place.
    if target.is_dir() and any(target.iterdir()):
        os.rename(target, old)
    os.replace(new, target)


def _remove_archive(old: Path) -> None:
    """Remove an archive that was replaced: its own files only. Anything else (put there after the
    check) stays, in the hidden directory beside the target, so nothing foreign is ever deleted."""
    if not old.is_dir():
        return
    foreign = set(foreign_files(old) or [])
    for path in sorted(old.rglob("*"), reverse=True):  # files before their directories
        name = path.relative_to(old).as_posix()
        if name in foreign or any(f.startswith(name + "/") for f in foreign):
            continue
        if path.is_dir():
            _rmdir_if_empty(path)
        else:
            path.unlink()
    _rmdir_if_empty(old)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty (or gone): keep it


def check_target(target: Path, *, replace: bool) -> None:
    """Raise ``TargetRefused`` unless writing an archive at ``target`` destroys nothing unasked."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink():
        raise TargetRefused(f"{target} is a symbolic link; give a new name")
    if target.suffix == ".tar":
        if not target.is_file() or not _is_archive_tar(target):
            raise TargetRefused(f"{target} exists and is not a gateway archive; give a new name")
    elif not target.is_dir():
        raise TargetRefused(f"{target} exists and is not a directory")
    elif not any(target.iterdir()):
        return
    else:
        foreign = foreign_files(target)
        if foreign is None:
            raise TargetRefused(f"{target} is a directory that is not empty and not a gateway archive")
        if foreign:
            raise TargetRefused(f"{target} holds files that are not part of the archive ({', '.join(foreign[:3])}"
                                f"{', ...' if len(foreign) > 3 else ''}); export never removes them")
    if not replace:
        raise TargetRefused(f"{target} is an archive already; add --force to replace it")


def _is_archive_tar(path: Path) -> bool:
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("./manifest.json")
            return member is not None and json.loads(member.read()).get("format") == FORMAT
    except (tarfile.TarError, KeyError, ValueError, OSError):
        return False


def foreign_files(root: Path) -> list[str] | None:
    """Files under ``root`` that are not part of the archive there; None when it is not an archive."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    own = {"manifest.json", "index.jsonl", "payloads", "certs"}
    own |= {f"certs/{name}" for name in manifest.get("certificates") or []}
    try:
        for line in (root / "index.jsonl").read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            own |= {row[k] for k in ("payload", "response") if isinstance(row.get(k), str)}
    except (OSError, ValueError, UnicodeDecodeError):
        pass  # a damaged index: its payloads count as foreign, so nothing is removed unasked
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    return [name for name in found if name not in own]


def _write_dir(root: Path, entries: list[Entry], manifest: dict[str, Any],
               certs: dict[str, bytes]) -> dict[str, Any]:
    (root / "payloads").mkdir(parents=True)
    (root / "certs").mkdir()
    lines = index_lines(entries)
    for e, line in zip(entries, lines, strict=True):
        row = json.loads(line)
        for prefix, data in (("payload", e.payload), ("response", e.response)):
            if data is not None:
                (root / row[prefix]).write_bytes(data)
    index = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    (root / "index.jsonl").write_bytes(index)
    for name, pem in certs.items():
        (root / "certs" / name).write_bytes(pem)
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    full = {**manifest, "format": FORMAT, "counts": counts, "exchanges": len(entries),
            "index_sha256": hashlib.sha256(index).hexdigest(), "certificates": sorted(certs)}
    (root / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


# ---------------------------------------------------------------- reading

def read_archive(path: Path) -> Archive:
    """Read and check an archive; raises DamagedArchive naming the first bad entry."""
    if path.is_file() and tarfile.is_tarfile(path):
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")
            return _read_dir(Path(tmp))
    if not path.is_dir():
        raise DamagedArchive(str(path), "not an archive directory or tar file")
    return _read_dir(path)


def _read_dir(root: Path) -> Archive:
    manifest = _manifest(root)
    index_path = root / "index.jsonl"
    if not index_path.is_file():
        raise DamagedArchive("index.jsonl", "missing")
    index = index_path.read_bytes()
    entries: list[Entry] = []
    for number, line in enumerate(index.decode("utf-8", "replace").splitlines(), 1):
        if line.strip():
            entries.append(_entry(root, number, line, entries[-1].seq + 1 if entries else 1))
    if hashlib.sha256(index).hexdigest() != manifest.get("index_sha256"):
        raise DamagedArchive("index.jsonl", "its sha256 differs from the one in manifest.json")
    certs = {p.name: p.read_bytes() for p in sorted((root / "certs").glob("*.pem"))}
    return Archive(manifest=manifest, entries=entries, certs=certs)


def _manifest(root: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except FileNotFoundError:
        raise DamagedArchive("manifest.json", "missing") from None
    except (ValueError, UnicodeDecodeError):
        raise DamagedArchive("manifest.json", "not valid JSON") from None
    if manifest.get("format") != FORMAT:
        raise DamagedArchive("manifest.json", f"unknown format {manifest.get('format')!r}")
    return manifest


def _entry(root: Path, number: int, line: str, expected_seq: int) -> Entry:
    try:
        row = json.loads(line)
        seq = int(row["seq"])
    except (ValueError, KeyError, TypeError):
        found = re.search(r'"seq":\s*(\d+)', line)
        name = f"seq {found.group(1)}" if found else f"seq {expected_seq}?"
        raise DamagedArchive(f"index.jsonl line {number} ({name})", "not a complete JSON line") from None
    files = {}
    for prefix in ("payload", "response"):
        if prefix in row:
            files[prefix] = _payload(root, seq, row[prefix], row.get(f"{prefix}_sha256"))
    meta = {k: v for k, v in row.items() if not k.startswith(("payload", "response"))}
    return Entry(meta=meta, payload=files.get("payload"), response=files.get("response"))


def _payload(root: Path, seq: int, name: str, digest: str | None) -> bytes:
    path = (root / name).resolve()
    if root.resolve() not in path.parents:
        raise DamagedArchive(f"seq {seq} ({name})", "the file name points outside the archive")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedArchive(f"seq {seq} ({name})", "payload file missing") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise DamagedArchive(f"seq {seq} ({name})", "sha256 differs from the index")
    return data


# ---------------------------------------------------------------- collecting from the store

def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def _keep(route: str, at: float, since: float | None, only: str | None) -> bool:
    return (since is None or at >= since) and (only is None or route == only)


def collect(store: Any, *, since: float | None = None, route: str | None = None) -> list[Entry]:
    """Every exchange in the store (optionally from ``since``, one route), in time order."""
    entries = _inbound(store, since, route) + _outbound(store, since, route) + _feed(store, since, route)
    entries.sort(key=lambda e: (e.at, KIND_ORDER[e.kind], e.meta.get("_order", 0)))
    for seq, e in enumerate(entries, 1):
        e.meta.pop("_order", None)
        e.meta["seq"] = seq
    return entries


def _inbound(store: Any, since: float | None, only: str | None) -> list[Entry]:
    rows = store.query(
        "SELECT i.id, i.received_at, i.partner, i.operation, i.channel, i.message_key, i.raw, i.outcome, "
        "i.fault_code, i.response_status, i.response_body, m.route, m.ack FROM inbound i "
        "LEFT JOIN messages m ON m.id = i.message_id ORDER BY i.id")
    out = []
    for (rid, at, partner, operation, channel, key, raw, outcome, fault, status, body, route, ack) in rows:
        route = route or _ROUTE_OF_PARTNER.get(partner, partner)
        if not _keep(route, at, since, only):
            continue
        meta = {"kind": "inbound", "route": route, "partner": partner, "operation": operation,
                "channel": channel, "message_key": key, "t": at, "at": _iso(at), "http_status": status,
                "outcome": outcome, "fault_code": fault, "_order": rid}
        out.append(Entry(meta, store.unseal("inbound.raw", raw) or b"", store.inbound_answer(outcome, body, ack)))
    return out


def _outbound(store: Any, since: float | None, only: str | None) -> list[Entry]:
    rows = store.query(
        "SELECT o.id, m.route, m.received_at, o.partner, o.operation, o.idempotency_key, o.order_key, o.payload, "
        "o.created_at, o.state, o.receipt FROM outbox o JOIN messages m ON m.id = o.message_id ORDER BY o.id")
    attempts: dict[int, list[tuple[Any, ...]]] = {}
    for row in store.query("SELECT outbox_id, attempt, started_at, duration_ms, http_status, outcome "
                           "FROM attempts ORDER BY id"):
        attempts.setdefault(int(row[0]), []).append(row)
    out = []
    for (oid, route, received, partner, operation, key, order_key, payload, created, state, receipt) in rows:
        if not _keep(route, received, since, only):
            continue
        base = {"route": route, "partner": partner, "operation": operation, "message_key": key}
        out.append(Entry({**base, "kind": "outbound", "order_key": order_key, "t": created, "at": _iso(created),
                          "outcome": state, "_order": oid}, store.unseal("outbox.payload", payload) or b""))
        out.extend(_answers(base, attempts.get(oid, []), store.unseal("outbox.receipt", receipt), oid))
    return out


def _answers(base: dict[str, Any], rows: list[tuple[Any, ...]], receipt: Any, oid: int) -> list[Entry]:
    # The store keeps the last receipt per delivery; it belongs to the last attempt. Earlier
    # attempts (503, 429, no answer) are kept with their status and outcome, without a body.
    out = []
    for n, (_, attempt, started, duration, status, outcome) in enumerate(rows):
        at = float(started) + float(duration) / 1000
        body = bytes(receipt) if receipt is not None and n == len(rows) - 1 else None
        out.append(Entry({**base, "kind": "answer", "attempt": attempt, "t": at, "at": _iso(at),
                          "http_status": status, "outcome": outcome, "_order": oid}, body))
    return out


def _feed(store: Any, since: float | None, only: str | None) -> list[Entry]:
    rows = store.query("SELECT id, message_key, received_at, facts FROM messages WHERE route = 'cjib-duo' "
                       "ORDER BY id")
    out = []
    for mid, key, at, facts_json in rows:
        if not _keep("cjib-duo", at, since, only):
            continue
        f = json.loads(facts_json)
        change = {"volgnummer": f["volgnummer"], "zaaknummer": f["zaaknummer"],
                  "opdrachtgeverReferentie": f["vorderingId"], "status": f["status"],
                  "openstaandCenten": f.get("openstaandCenten"), "tijdstip": f.get("tijdstip"),
                  "redenen": [{"code": c, "omschrijving": o, **({"pad": p} if p else {})}
                              for c, o, p in f.get("redenen", [])]}
        body = json.dumps(change, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        out.append(Entry({"kind": "feed", "route": "cjib-duo", "partner": "cjib", "operation": "Statuswijziging",
                          "message_key": key, "t": at, "at": _iso(at), "_order": mid}, body))
    return out


def rules_history(store: Any) -> list[dict[str, Any]]:
    """The rule-set history (which rule set assessed from when, every roll-out and its corrections).

    Operators' names stay in the store: a replay needs the times, versions and corrections only.
    """
    rows = store.query("SELECT at, version, source, corrections FROM rules_history ORDER BY at, id")
    return [{"t": float(at), "at": _iso(float(at)), "version": version, "source": source,
             "corrections": None if corrections is None else int(corrections)}
            for at, version, source, corrections in rows]


def ruleset_versions(store: Any) -> list[str]:
    rows = store.query("SELECT DISTINCT facts FROM messages WHERE route = 'ind-duo'")
    return sorted({json.loads(r[0]).get("regelsetVersie") for r in rows} - {None})


# ---------------------------------------------------------------- export

def config_certs(config: Any) -> dict[str, bytes]:
    """The public certificates the gateway trusts (and its own), named per partner."""
    pems: dict[str, bytes] = {}
    if config.tls.cert_file:
        pems["gateway-0.pem"] = Path(config.tls.cert_file).read_bytes()
    for name, pc in config.partners.items():
        for i, f in enumerate(pc.certificate_files):
            pems[f"{name}-{i}.pem"] = Path(f).read_bytes()
        for i, f in enumerate(pc.trust_anchor_files):
            pems[f"{name}-ca-{i}.pem"] = Path(f).read_bytes()
    return pems


def export(config: Any, store: Any, target: Path, *, since: float | None = None, route: str | None = None,
           key: bytes | None = None, personal_data: bool = False, replace: bool = False) -> dict[str, Any]:
    """Collect from the store, pseudonymize with ``key``, write; returns the manifest.

    Without a key the archive carries personal data in clear: that must be asked for with
    ``personal_data=True`` (the CLI's ``--with-personal-data``, which checks and audits the operator).
    """
    if key is None and not personal_data:
        raise ValueError("an export without a pseudonymization key carries personal data: "
                         "ask for it explicitly (personal_data=True)")
    check_target(target, replace=replace)  # before the work, so that a refusal costs nothing
    entries = collect(store, since=since, route=route)
    manifest: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gateway_version": gateway_version(),
        "config_digest": config.digest(),
        "rule_set_versions": ruleset_versions(store),
        "rule_set_history": rules_history(store),
        "since": _iso(since) if since is not None else None,
        "route": route,
        "pseudonymized": key is not None,
    }
    if key is None:
        certs = config_certs(config)
    else:
        certs = _pseudonymize(entries, key, config)
    return write_archive(target, entries, manifest, certs, replace=replace)


def _pseudonymize(entries: list[Entry], key: bytes, config: Any) -> dict[str, bytes]:
    from gateway.archive.pseudonym import ArchivePseudonymizer, SandboxKeys, shipped_rulesets

    earliest = min((e.at for e in entries), default=dt.datetime.now(dt.UTC).timestamp())
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = SandboxKeys.make(Path(tmp), dt.datetime.fromtimestamp(earliest, dt.UTC) - dt.timedelta(days=2))
    ArchivePseudonymizer(key, sandbox, shipped_rulesets(config.rules.directory)).run(entries)
    return sandbox.pems

"""The data keys of encryption at rest: which key each stored record is sealed with, and moving
every record to the current key (``gateway keys status``, ``gateway keys rotate-data-key``).

Rotation walks each table with sealed columns (``gateway.core.store.SEALED``) in id order, in
batches, each batch in its own transaction together with its cursor (``state_kv``
``encryption.rotation``): killed at any moment it loses nothing (a batch is either written whole,
cursor included, or not at all) and a rerun goes on after the last batch written. A record under
another key gets its data key re-wrapped (the ciphertext is kept); a legacy clear record (from
before encryption) is sealed. The rows of a batch are locked (PostgreSQL ``FOR UPDATE``; SQLite
writes one at a time anyway), so a gateway running beside it never has a receipt or a purge
overwritten. When a pass ends and no record is left under an old key, that key's check is
dropped from the store, and the key may then be removed from the key file.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from gateway.core.store import KEY_CHECK, SEALED, Store
from gateway.security import atrest

__all__ = ["status", "rotate", "count", "TABLES", "CURSOR"]

#: table -> its sealed columns, in the order rotation walks them.
TABLES: dict[str, tuple[str, ...]] = {}
for _column in SEALED:
    _table, _, _name = _column.partition(".")
    TABLES.setdefault(_table, ())
    TABLES[_table] += (_name,)
CURSOR = "encryption.rotation"
# Enough of a value to read its key id: the blob header (4 + 1 + 64), base64 for text columns.
_HEAD_BYTES = 69
_HEAD_TEXT = len(atrest.TEXT_PREFIX) + 4 * 24


def _head_key(value: Any, kind: str) -> str | None:
    """The key id of a value's head; "clear" for a legacy clear value; None for empty / NULL."""
    if value is None:
        return None
    if kind == "text":
        text = str(value)
        if not text:
            return None
        if not text.startswith(atrest.TEXT_PREFIX):
            return "clear"
        try:
            head = base64.b64decode(text[len(atrest.TEXT_PREFIX):][:4 * 23])
        except ValueError:
            return "damaged"
        return atrest.key_id_of(head) or "damaged"
    blob = bytes(value)
    if not blob:
        return None
    return atrest.key_id_of(blob) or "clear"


def status(store: Store) -> dict[str, Any]:
    """Records per key id (``clear``: stored before encryption), per column and in all; the keys
    the store has checks for; the rotation cursor, if a rotation is under way."""
    columns: dict[str, dict[str, int]] = {}
    total: dict[str, int] = {}
    with store.tx(write=False) as t:
        for column, kind in SEALED.items():
            table, _, name = column.partition(".")
            width = _HEAD_TEXT if kind == "text" else _HEAD_BYTES
            counts: dict[str, int] = {}
            for head, n in t.all(f"SELECT substr({name}, 1, {width}), COUNT(*) FROM {table} "
                                 f"WHERE {name} IS NOT NULL GROUP BY substr({name}, 1, {width})"):
                kid = _head_key(head, kind)
                if kid is not None:
                    counts[kid] = counts.get(kid, 0) + int(n)
            columns[column] = counts
            for kid, n in counts.items():
                total[kid] = total.get(kid, 0) + n
        checks = sorted(str(r[0])[len(KEY_CHECK):] for r in t.all(
            "SELECT name FROM state_kv WHERE name LIKE :p", {"p": KEY_CHECK + "%"}))
        cursor = t.one("SELECT value FROM state_kv WHERE name = :n", {"n": CURSOR})
    return {"current": store.keyring.current if store.keyring else None, "records": total, "columns": columns,
            "store_keys": checks, "rotation": json.loads(cursor[0]) if cursor else None}


def count(store: Store) -> int:
    with store.tx(write=False) as t:
        return sum(int(t.all(f"SELECT COUNT(*) FROM {table}")[0][0]) for table in TABLES)


def rotate(store: Store, *, batch: int = 500, pause_seconds: float = 0.0,
           progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Move every record to the current key; resumable (see the module's docstring).

    Returns counts: rows looked at, data keys re-wrapped, clear records sealed, and the records
    left under another key (written meanwhile by a process still on the old key: run it again)."""
    keyring = store.keyring
    if keyring is None:
        raise ValueError("no data key is configured ([encryption])")
    with store.tx(write=False) as t:
        row = t.one("SELECT value FROM state_kv WHERE name = :n", {"n": CURSOR})
    cursor = json.loads(row[0]) if row else None
    if not cursor or cursor.get("key") != keyring.current:
        cursor = {"key": keyring.current, "table": next(iter(TABLES)), "after": 0}
    done = {"rows": 0, "rewrapped": 0, "sealed": 0, "resumed_at": dict(cursor)}
    tables = list(TABLES)
    resumed = cursor["table"] != tables[0] or cursor["after"] > 0
    while True:
        for table in tables[tables.index(cursor["table"]):]:
            after = cursor["after"] if table == cursor["table"] else 0
            while True:
                n, after = _batch(store, keyring, table, after, batch, done)
                if progress is not None and n:
                    progress(n)
                if n < batch:
                    break
                if pause_seconds:
                    time.sleep(pause_seconds)
        with store.tx() as t:
            t.execute("DELETE FROM state_kv WHERE name = :n", {"n": CURSOR})
        left = status(store)["records"]
        if not resumed or not any(n for k, n in left.items() if k != keyring.current):
            break
        # A resumed pass began half-way: the tables it skipped may have taken records meanwhile.
        resumed = False
        cursor = {"key": keyring.current, "table": tables[0], "after": 0}
    with store.tx() as t:
        for kid in keyring.keys:
            if kid != keyring.current and not left.get(kid):
                t.execute("DELETE FROM state_kv WHERE name = :n", {"n": KEY_CHECK + kid})
    done["left"] = {k: v for k, v in left.items() if k != keyring.current}
    return done


def _batch(store: Store, keyring: atrest.Keyring, table: str, after: int, size: int,
           done: dict[str, Any]) -> tuple[int, int]:
    names = TABLES[table]
    with store.tx() as t:
        rows = t.all(f"SELECT id, {', '.join(names)} FROM {table} WHERE id > :after ORDER BY id LIMIT :n "
                     "{for_update}", {"after": after, "n": size})
        for row in rows:
            changes: dict[str, Any] = {}
            for name, value in zip(names, row[1:], strict=True):
                moved = _rewrap(keyring, f"{table}.{name}", value, done)
                if moved is not None:
                    changes[name] = moved
            if changes:
                sets = ", ".join(f"{name} = :{name}" for name in changes)
                t.execute(f"UPDATE {table} SET {sets} WHERE id = :id", {**changes, "id": row[0]})
        last = int(rows[-1][0]) if rows else after
        t.set_kv(CURSOR, json.dumps({"key": keyring.current, "table": table, "after": last}))
    done["rows"] += len(rows)
    return len(rows), last


def _rewrap(keyring: atrest.Keyring, column: str, value: Any, done: dict[str, Any]) -> Any:
    """The value under the current key, or None when it is already there (or empty)."""
    if value is None:
        return None
    aad = column.encode()
    try:
        if SEALED[column] == "text":
            text = str(value)
            if not text or atrest.key_id_of(text) == keyring.current:
                return None
            done["sealed" if not atrest.is_sealed(text) else "rewrapped"] += 1
            return keyring.rewrap_text(text, aad)
        blob = bytes(value)
        if not blob or atrest.key_id_of(blob) == keyring.current:
            return None
        done["sealed" if not atrest.is_sealed(blob) else "rewrapped"] += 1
        return keyring.rewrap(blob, aad)
    except atrest.SealError as exc:
        from gateway.core.errors import StoreKeyMismatch

        raise StoreKeyMismatch(f"{column}: {exc}") from None

"""Encryption at rest: every stored payload and personal field sealed with AES-256-GCM.

Pure (no I/O but reading a key file in ``load_keyring``). Each record gets its own random
256-bit data key (DEK); the record is encrypted with it (AES-256-GCM, a random 96-bit nonce, the
column's name as associated data, so a blob moved to another column does not open), and the DEK
is wrapped with a key-encryption key (KEK) that lives outside the database (AES key wrap,
RFC 3394). The KEK's id is written in front, so the keys can be rotated: ``rewrap`` puts a
record's DEK under another KEK without touching the ciphertext.

A sealed blob::

    b"GWE1" | len(key id) (1 byte) | key id (ASCII) | wrapped DEK (40 bytes) | nonce (12) | ciphertext+tag

A sealed text (for TEXT columns) is ``"gwe1:" + base64(blob)``. Anything else is a legacy clear
record from before encryption (``is_sealed`` is false); ``open`` hands it back unchanged, so a
store converts record by record (``gateway keys rotate-data-key``).

Cost: one DEK from ``os.urandom``, one key wrap and one AES-GCM per record (a few µs); no key
derivation per record.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

__all__ = ["MAGIC", "TEXT_PREFIX", "KEY_ID", "Keyring", "SealError", "UnknownKey", "parse_keys", "load_keyring",
           "is_sealed", "key_id_of", "new_key"]

MAGIC = b"GWE1"
TEXT_PREFIX = "gwe1:"
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_WRAPPED = 40
_NONCE = 12


class SealError(Exception):
    """A sealed record does not open: tampered, moved to another column, or the wrong key."""


class UnknownKey(SealError):
    """A sealed record names a key id that is not configured."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"the record was sealed with data key {key_id!r}, which is not configured")
        self.key_id = key_id


def is_sealed(value: bytes | str | None) -> bool:
    if isinstance(value, str):
        return value.startswith(TEXT_PREFIX)
    return value is not None and bytes(value[:4]) == MAGIC


def key_id_of(value: bytes | str) -> str | None:
    """The key id a sealed record names; None for a legacy clear record."""
    if isinstance(value, str):
        if not value.startswith(TEXT_PREFIX):
            return None
        value = _unb64(value)
    value = bytes(value)
    if value[:4] != MAGIC or len(value) < 5:
        return None
    n = value[4]
    return value[5:5 + n].decode("ascii", "replace")


@dataclass(frozen=True)
class Keyring:
    """The key-encryption keys by id, and the id new records are sealed with."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"the current data key {self.current!r} is not among the keys")
        for key_id, key in self.keys.items():
            if not KEY_ID.match(key_id):
                raise ValueError(f"data key id {key_id!r}: use 1-64 of A-Z a-z 0-9 . _ -")
            if len(key) != 32:
                raise ValueError(f"data key {key_id!r}: must be 32 bytes (AES-256), not {len(key)}")

    # ------------------------------------------------------------ bytes

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        dek = os.urandom(32)
        nonce = os.urandom(_NONCE)
        kid = self.current.encode("ascii")
        wrapped = aes_key_wrap(self.keys[self.current], dek)
        return b"".join((MAGIC, bytes((len(kid),)), kid, wrapped, nonce, AESGCM(dek).encrypt(nonce, plaintext, aad)))

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of a sealed record (a legacy clear record comes back as it is)."""
        blob = bytes(blob)
        if blob[:4] != MAGIC:
            return blob
        kid, wrapped, rest = self._split(blob)
        try:
            dek = aes_key_unwrap(self._kek(kid), wrapped)
            return AESGCM(dek).decrypt(rest[:_NONCE], rest[_NONCE:], aad)
        except (InvalidUnwrap, InvalidTag, ValueError) as exc:
            raise SealError(f"a record sealed with data key {kid!r} does not open (tampered, moved to "
                            "another column, or the key is not the one it was sealed with)") from exc

    def rewrap(self, blob: bytes, aad: bytes) -> bytes:
        """The record under the current key: its DEK re-wrapped (the ciphertext is kept), or a
        legacy clear record sealed. The ciphertext is checked before anything is written."""
        blob = bytes(blob)
        if blob[:4] != MAGIC:
            return self.seal(blob, aad)
        kid, wrapped, rest = self._split(blob)
        if kid == self.current:
            return blob
        self.open(blob, aad)  # never re-wrap what would not open
        dek = aes_key_unwrap(self._kek(kid), wrapped)
        new = self.current.encode("ascii")
        return b"".join((MAGIC, bytes((len(new),)), new, aes_key_wrap(self.keys[self.current], dek), rest))

    # ------------------------------------------------------------ text columns

    def seal_text(self, text: str, aad: bytes) -> str:
        return TEXT_PREFIX + base64.b64encode(self.seal(text.encode("utf-8"), aad)).decode("ascii")

    def open_text(self, value: str, aad: bytes) -> str:
        if not value.startswith(TEXT_PREFIX):
            return value
        return self.open(_unb64(value), aad).decode("utf-8")

    def rewrap_text(self, value: str, aad: bytes) -> str:
        if not value.startswith(TEXT_PREFIX):
            return self.seal_text(value, aad)
        return TEXT_PREFIX + base64.b64encode(self.rewrap(_unb64(value), aad)).decode("ascii")

    # ------------------------------------------------------------ helpers

    def _kek(self, kid: str) -> bytes:
        key = self.keys.get(kid)
        if key is None:
            raise UnknownKey(kid)
        return key

    @staticmethod
    def _split(blob: bytes) -> tuple[str, bytes, bytes]:
        if len(blob) < 5:
            raise SealError("a sealed record is cut short")
        n = blob[4]
        end = 5 + n + _WRAPPED
        if len(blob) < end + _NONCE + 16:
            raise SealError("a sealed record is cut short")
        return blob[5:5 + n].decode("ascii", "replace"), blob[5 + n:end], blob[end:]


def _unb64(value: str) -> bytes:
    try:
        return base64.b64decode(value[len(TEXT_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealError("a sealed text is not valid base64") from exc


def new_key() -> str:
    """A fresh key as it is written in a key file (base64 of 32 random bytes)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def parse_keys(text: str, *, source: str) -> dict[str, bytes]:
    """``ID:KEY`` entries (separated by new lines, spaces or commas; ``#`` starts a comment);
    KEY is base64 of 32 bytes or 64 hex digits. Raises ValueError naming ``source``, never a key."""
    keys: dict[str, bytes] = {}
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].replace(",", " ").split():
            kid, sep, value = entry.partition(":")
            if not sep or not KEY_ID.match(kid):
                raise ValueError(f"{source}: each entry is ID:KEY (ID of A-Z a-z 0-9 . _ -)")
            if kid in keys:
                raise ValueError(f"{source}: data key {kid!r} appears twice")
            try:
                key = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{source}: data key {kid!r} is neither base64 nor hex") from None
            if len(key) != 32:
                raise ValueError(f"{source}: data key {kid!r} must be 32 bytes (AES-256), not {len(key)}")
            keys[kid] = key
    if not keys:
        raise ValueError(f"{source}: no data key in it")
    return keys


def load_keyring(*, key_file: str = "", env_var: str = "", current: str = "",
                 environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring from a key file (mode 0600 or stricter, else refused) and/or an environment
    variable; ``current`` empty: the last key listed (the file's, then the variable's)."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    if key_file:
        path = Path(key_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{key_file}: cannot read the data key file ({exc.strerror})") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"{key_file}: the data key file must be readable by its owner only "
                             f"(mode 0600 or stricter, it is {stat.S_IMODE(mode):04o}); chmod 600 {key_file}")
        for kid, key in parse_keys(text, source=key_file).items():
            keys[kid] = key
            order.append(kid)
    if env_var:
        value = (environ if environ is not None else os.environ).get(env_var, "")
        if value.strip():
            for kid, key in parse_keys(value, source=f"${env_var}").items():
                if kid in keys and not hmac.compare_digest(keys[kid], key):
                    raise ValueError(f"data key {kid!r} differs between {key_file} and ${env_var}")
                if kid not in keys:
                    order.append(kid)
                keys[kid] = key
        elif not key_file:
            raise ValueError(f"encryption.key_env: ${env_var} is not set (or empty)")
    if not keys:
        raise ValueError("no data key configured")
    chosen = current or order[-1]
    if chosen not in keys:
        raise ValueError(f"encryption.current_key_id {chosen!r} is not among the configured data keys")
    return Keyring(keys, chosen)

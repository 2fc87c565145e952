"""The sealing of stored records (gateway.security.atrest): round trips, tampering, the wrong
column, the wrong or an unknown key, legacy clear records, re-wrapping and key files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.security import atrest

K1, K2 = os.urandom(32), os.urandom(32)
AAD = b"outbox.payload"


def ring(current: str = "k1", **extra: bytes) -> atrest.Keyring:
    return atrest.Keyring({"k1": K1, "k2": K2, **extra}, current)


def test_round_trip_each_record_its_own_data_key() -> None:
    r = ring()
    a, b = r.seal(b"<x>123456782</x>", AAD), r.seal(b"<x>123456782</x>", AAD)
    assert a != b and b"123456782" not in a
    assert atrest.is_sealed(a) and atrest.key_id_of(a) == "k1"
    assert r.open(a, AAD) == r.open(b, AAD) == b"<x>123456782</x>"
    assert r.open(r.seal(b"", AAD), AAD) == b""
    text = r.seal_text('{"bsn":"123456782"}', b"messages.person")
    assert text.startswith("gwe1:") and "123456782" not in text and atrest.key_id_of(text) == "k1"
    assert r.open_text(text, b"messages.person") == '{"bsn":"123456782"}'


@pytest.mark.parametrize("where", [0, 10, 60, -1])
def test_tampering_is_refused(where: int) -> None:
    r = ring()
    blob = bytearray(r.seal(b"payload" * 10, AAD))
    where = where if where >= 0 else len(blob) - 1
    if where == 0:
        blob[5] ^= 1  # the key id: names another key (or none)
    else:
        blob[where] ^= 1
    with pytest.raises(atrest.SealError):
        r.open(bytes(blob), AAD)
    with pytest.raises(atrest.SealError):
        r.open(r.seal(b"x" * 40, AAD)[:30], AAD)


def test_another_column_or_the_wrong_key_does_not_open() -> None:
    blob = ring().seal(b"secret", AAD)
    with pytest.raises(atrest.SealError, match="does not open"):
        ring().open(blob, b"inbound.raw")
    with pytest.raises(atrest.SealError, match="does not open"):
        atrest.Keyring({"k1": os.urandom(32)}, "k1").open(blob, AAD)
    with pytest.raises(atrest.UnknownKey, match="'k1'") as info:
        atrest.Keyring({"k2": K2}, "k2").open(blob, AAD)
    assert info.value.key_id == "k1"


def test_legacy_clear_records_read_as_they_are_and_rewrap_seals_them() -> None:
    r = ring()
    assert r.open(b"<clear/>", AAD) == b"<clear/>" and not atrest.is_sealed(b"<clear/>")
    assert r.open_text('{"a":1}', b"messages.person") == '{"a":1}'
    assert atrest.key_id_of(b"<clear/>") is None
    sealed = r.rewrap(b"<clear/>", AAD)
    assert atrest.key_id_of(sealed) == "k1" and r.open(sealed, AAD) == b"<clear/>"
    assert atrest.key_id_of(r.rewrap_text('{"a":1}', b"p")) == "k1"


def test_rewrap_moves_a_record_to_the_current_key_keeping_its_ciphertext() -> None:
    old = ring("k1").seal(b"notification", AAD)
    new = ring("k2").rewrap(old, AAD)
    assert atrest.key_id_of(new) == "k2" and new[-30:] == old[-30:]
    assert atrest.Keyring({"k2": K2}, "k2").open(new, AAD) == b"notification"
    assert ring("k2").rewrap(new, AAD) == new  # already there: unchanged
    with pytest.raises(atrest.SealError):
        ring("k2").rewrap(old, b"inbound.raw")  # never re-wraps what does not open


def test_key_files(tmp_path: Path) -> None:
    f = tmp_path / "data.keys"
    f.write_text(f"# data keys\nold:{K1.hex()}\nnew:{atrest.new_key()}  # current\n")
    f.chmod(0o600)
    r = atrest.load_keyring(key_file=str(f))
    assert r.current == "new" and r.keys["old"] == K1
    assert atrest.load_keyring(key_file=str(f), current="old").current == "old"
    f.chmod(0o640)
    with pytest.raises(ValueError, match=r"data.keys: the data key file must be readable by its owner only.*0640"):
        atrest.load_keyring(key_file=str(f))
    env = {"GW_KEYS": f"e1:{atrest.new_key()}"}
    assert atrest.load_keyring(env_var="GW_KEYS", environ=env).current == "e1"
    with pytest.raises(ValueError, match=r"\$GW_KEYS is not set"):
        atrest.load_keyring(env_var="GW_KEYS", environ={})
    for bad in ("k1", "k1:abc", f"k 1:{K1.hex()}", f"k1:{K1.hex()} k1:{K1.hex()}"):
        with pytest.raises(ValueError) as info:
            atrest.parse_keys(bad, source="X")
        assert K1.hex() not in str(info.value)
    with pytest.raises(ValueError, match="not among"):
        atrest.load_keyring(env_var="GW_KEYS", environ=env, current="nope")

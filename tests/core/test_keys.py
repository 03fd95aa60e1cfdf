"""Keys, signatures, key files and addresses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.address import decode_address, encode_address, parse_address
from core.errors import KeyFileError
from core.keyfile import is_encrypted, load_key, save_key
from core.keys import PrivateKey, verify

pytestmark = pytest.mark.core

FAST_KDF = 1 << 10  # tests use a cheap scrypt cost, lowering the floor explicitly; the default is 2^15


def test_sign_and_verify() -> None:
    key = PrivateKey.generate()
    sig = key.sign(b"msg")
    assert verify(key.public_key, b"msg", sig)
    assert not verify(key.public_key, b"msh", sig)
    assert not verify(PrivateKey.generate().public_key, b"msg", sig)
    assert not verify(key.public_key, b"msg", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not verify(b"short", b"msg", sig)


def test_derived_keys_are_deterministic_and_distinct() -> None:
    a = PrivateKey.derive("seed", "validator", 0)
    assert a.public_key == PrivateKey.derive("seed", "validator", 0).public_key
    assert a.public_key != PrivateKey.derive("seed", "validator", 1).public_key
    assert a.public_key != PrivateKey.derive("seed", "account", 0).public_key


def test_repr_never_shows_the_secret() -> None:
    key = PrivateKey.generate()
    assert key.seed.hex() not in repr(key)


def test_plain_key_file_round_trip_with_mode_0600(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = tmp_path / "k.json"
    save_key(path, key)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not is_encrypted(path)
    assert load_key(path).public_key == key.public_key


def test_encrypted_key_file_needs_the_right_passphrase(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = tmp_path / "k.json"
    save_key(path, key, "correct horse", kdf_n=FAST_KDF, min_kdf_n=FAST_KDF)
    assert is_encrypted(path)
    assert key.seed.hex() not in path.read_text()
    assert load_key(path, "correct horse", min_kdf_n=FAST_KDF).public_key == key.public_key
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(path, "wrong", min_kdf_n=FAST_KDF)
    with pytest.raises(KeyFileError, match="passphrase is required"):
        load_key(path)


def test_scrypt_parameters_below_the_floor_are_refused(tmp_path: Path) -> None:
    """A sealed file rewritten to a cheap KDF (n=2, r=1) would make a stolen file easy to brute-force."""
    path = tmp_path / "k.json"
    with pytest.raises(KeyFileError, match="below the floor"):
        save_key(path, PrivateKey.generate(), "pw", kdf_n=FAST_KDF)
    assert not path.exists()
    save_key(path, PrivateKey.generate(), "pw", kdf_n=FAST_KDF, min_kdf_n=FAST_KDF)
    with pytest.raises(KeyFileError, match=r"n=1024, r=8, p=1 are below the floor"):
        load_key(path, "pw")
    doc = json.loads(path.read_text())
    for n, r, p, why in ((2, 8, 1, "below the floor"), (1 << 15, 1, 1, "below the floor"),
                         (1 << 15, 8, 0, "below the floor"), (3 << 14, 8, 1, "not a power of two"),
                         (1 << 21, 8, 1, "above the ceiling")):
        doc["kdf"].update(n=n, r=r, p=p)
        path.write_text(json.dumps(doc))
        with pytest.raises(KeyFileError, match=why):
            load_key(path, "pw", min_kdf_n=FAST_KDF if n >= FAST_KDF else 2 * n)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    save_key(path, PrivateKey.generate())
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match=r"too open.*chmod 600"):
        load_key(path)


def test_truncated_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    save_key(path, PrivateKey.generate())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeyFileError, match="truncated or corrupt"):
        load_key(path)


def test_tampered_key_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    save_key(path, PrivateKey.generate())
    doc = json.loads(path.read_text())
    doc["public_key"] = PrivateKey.generate().public_key.hex()
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="does not match"):
        load_key(path)


def test_missing_key_file_and_overwrite_refusal(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        load_key(tmp_path / "none.json")
    path = tmp_path / "k.json"
    save_key(path, PrivateKey.generate())
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        save_key(path, PrivateKey.generate())


@settings(max_examples=200)
@given(st.binary(min_size=20, max_size=20))
def test_address_text_round_trip(raw: bytes) -> None:
    text = encode_address(raw)
    assert text.startswith("ic1")
    assert decode_address(text) == raw
    assert decode_address(text.upper()) == raw
    assert parse_address(text) == raw
    for hex_form in (raw.hex(), "0x" + raw.hex(), "0X" + raw.hex().upper()):
        with pytest.raises(ValueError, match="hex address, not an Inferchain address"):
            parse_address(hex_form)


@settings(max_examples=200)
@given(st.binary(min_size=20, max_size=20), st.data())
def test_any_single_character_typo_is_detected(raw: bytes, data: st.DataObject) -> None:
    text = encode_address(raw)
    i = data.draw(st.integers(3, len(text) - 1))
    replacement = data.draw(st.sampled_from("qpzry9x8gf2tvdw0s3jn54khce6mua7l").filter(lambda c: c != text[i]))
    typo = text[:i] + replacement + text[i + 1:]
    with pytest.raises(ValueError, match="not an address"):
        decode_address(typo)

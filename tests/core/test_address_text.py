"""The text form of an address (bech32m, BIP-350) against a plain transcription of the BIP's reference
code: the table-driven checksum and the memo give the same text, and the text still refuses typos."""

from __future__ import annotations

import random

import pytest

from core.address import HRP, decode_address, encode_address
from core.types import Address

pytestmark = pytest.mark.core

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _reference_polymod(values: list[int]) -> int:  # BIP-350's bech32_polymod, as written there
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


def _reference_encode(raw: bytes) -> str:
    acc = bits = 0
    data = []
    for byte in raw:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    hrp = [ord(c) >> 5 for c in HRP] + [0] + [ord(c) & 31 for c in HRP]
    polymod = _reference_polymod(hrp + data + [0] * 6) ^ 0x2BC830A3
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)


def test_the_text_form_is_bip350s_and_round_trips() -> None:
    rng = random.Random(7)
    raws = [bytes(20), b"\xff" * 20] + [rng.randbytes(20) for _ in range(300)]
    for _ in range(2):  # the second pass answers from the memo
        for raw in raws:
            text = encode_address(Address(raw))
            assert text == _reference_encode(raw)
            assert encode_address(raw) == text
            assert decode_address(text) == raw


def test_a_mistyped_character_is_refused() -> None:
    rng = random.Random(8)
    for _ in range(100):
        text = encode_address(Address(rng.randbytes(20)))
        i = rng.randrange(len(HRP) + 1, len(text))
        typo = text[:i] + rng.choice(_CHARSET.replace(text[i], "")) + text[i + 1:]
        with pytest.raises(ValueError):
            decode_address(typo)

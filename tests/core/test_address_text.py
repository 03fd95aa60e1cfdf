"""The text form of an address (bech32m, BIP-350) against a plain transcription of the BIP's reference
code: the table-driven checksum and the memo give the same text, and the text still refuses typos."""

from __future__ import annotations

import random

import pytest

from core.address import HRP, decode_address, encode_address
from core.types import Address
from tools.bech32_reference import CHARSET, reference_encode

pytestmark = pytest.mark.core

def test_the_text_form_is_bip350s_and_round_trips() -> None:
    rng = random.Random(7)
    raws = [bytes(20), b"\xff" * 20] + [rng.randbytes(20) for _ in range(300)]
    for _ in range(2):  # the second pass answers from the memo
        for raw in raws:
            text = encode_address(Address(raw))
            assert text == reference_encode(raw)
            assert encode_address(raw) == text
            assert decode_address(text) == raw


def test_a_mistyped_character_is_refused() -> None:
    rng = random.Random(8)
    for _ in range(100):
        text = encode_address(Address(rng.randbytes(20)))
        i = rng.randrange(len(HRP) + 1, len(text))
        typo = text[:i] + rng.choice(CHARSET.replace(text[i], "")) + text[i + 1:]
        with pytest.raises(ValueError):
            decode_address(typo)

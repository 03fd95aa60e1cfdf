"""Addresses: the first 20 bytes of SHA-256(public key), written as bech32m text with the prefix `ic`.

bech32m (BIP-350) detects any error in up to four characters and is case-insensitive, so a mistyped
address is refused instead of sending funds to nobody.
"""

from __future__ import annotations

import functools

from core.hashing import sha256
from core.types import Address, PublicKeyBytes

HRP = "ic"
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


@functools.lru_cache(maxsize=1 << 15)
def address_from_public_key(public_key: PublicKeyBytes | bytes) -> Address:
    # Memoized: a node derives a sender's address several times per transaction (RPC entry, gossip hook,
    # mempool), ~7 us each under load against ~0.1 for a hit; bounded, and a pure function of the key.
    return Address(sha256(bytes(public_key))[:20])


def _gen_table() -> tuple[int, ...]:
    table = []
    for top in range(32):
        x = 0
        for i in range(5):
            if (top >> i) & 1:
                x ^= _GEN[i]
        table.append(x)
    return tuple(table)


# BIP-350's generator step for each value of the 5 bits shifted out: one lookup instead of five tests.
_GEN_TABLE = _gen_table()


def _polymod(values: list[int]) -> int:
    chk = 1
    table = _GEN_TABLE
    for v in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ v) ^ table[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        raise ValueError("invalid padding")
    return out


def encode_address(address: Address | bytes) -> str:
    return _encode_address(bytes(address))


@functools.lru_cache(maxsize=1 << 15)
def _encode_address(address: bytes) -> str:
    # Memoized: RPC answers and block notifications write each transaction's sender (a block RPC ~50 us per
    # transaction before); bounded, and a pure function of the 20 bytes.
    data = _convert_bits(address, 8, 5, pad=True)
    polymod = _polymod([*_hrp_expand(HRP), *data, 0, 0, 0, 0, 0, 0]) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)


def decode_address(text: str) -> Address:
    """Parse the text form; raises ValueError with a one-line reason for anything that is not an address."""
    if not isinstance(text, str) or not 8 <= len(text) <= 90:
        raise ValueError("not an address: wrong length")
    if text.lower() != text and text.upper() != text:
        raise ValueError("not an address: mixed case")
    text = text.lower()
    hrp, sep, rest = text.rpartition("1")
    if not sep or hrp != HRP:
        raise ValueError(f"not an address: expected the prefix '{HRP}1'")
    try:
        data = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise ValueError("not an address: invalid character") from None
    if len(data) < 6 or _polymod(_hrp_expand(hrp) + data) != _BECH32M_CONST:
        raise ValueError("not an address: checksum mismatch (mistyped?)")
    raw = bytes(_convert_bits(data[:-6], 5, 8, pad=False))
    if len(raw) != Address.SIZE:
        raise ValueError("not an address: wrong payload length")
    return Address(raw)


def parse_address(text: str) -> Address:
    """The one text form users and files give: bech32m (`ic1…`); raises ValueError with a one-line reason.

    Hex is refused on purpose: a `0x…` string is most likely another chain's address, and the same 20 bytes
    read as an Inferchain address belong to nobody the sender meant (tools that hold raw bytes call
    `Address.from_hex` themselves).
    """
    stripped = text.strip()
    if not stripped.lower().startswith(HRP + "1") and _looks_like_hex(stripped):
        raise ValueError(f"{stripped[:60]!r} is a hex address, not an Inferchain address: "
                         f"give the {HRP}1… form (`inferchain keys show NAME --address`)")
    return decode_address(stripped)


def _looks_like_hex(text: str) -> bool:
    digits = text[2:] if text[:2].lower() == "0x" else text
    return bool(digits) and all(c in "0123456789abcdefABCDEF" for c in digits)

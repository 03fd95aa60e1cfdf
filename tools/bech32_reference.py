"""BIP-350's reference bech32m code, transcribed plainly: the yardstick that tests/core/test_address_text.py
checks `core.address` against and that `bench/rpc.py --part block` times as the old encoder."""

from __future__ import annotations

from core.address import HRP

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def reference_polymod(values: list[int]) -> int:  # BIP-350's bech32_polymod, as written there
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


def reference_encode(raw: bytes) -> str:
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
    polymod = reference_polymod(hrp + data + [0] * 6) ^ 0x2BC830A3
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return HRP + "1" + "".join(CHARSET[d] for d in data + checksum)

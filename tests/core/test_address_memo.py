"""A sender's address is memoized per public key: the same value the definition gives, for any key form."""

from __future__ import annotations

import hashlib
import os

import pytest

from core.address import address_from_public_key
from core.types import Address, PublicKeyBytes

pytestmark = pytest.mark.core


def test_memoized_address_is_the_first_20_bytes_of_the_keys_sha256() -> None:
    keys = [os.urandom(32) for _ in range(300)]
    for _ in range(2):  # the second pass answers from the memo
        for key in keys:
            expected = hashlib.sha256(key).digest()[:20]
            assert address_from_public_key(key) == expected
            assert address_from_public_key(PublicKeyBytes(key)) == expected
            assert isinstance(address_from_public_key(key), Address)
    assert address_from_public_key(keys[0]) != address_from_public_key(keys[1])

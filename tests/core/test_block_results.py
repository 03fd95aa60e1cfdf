"""A block's results root: each distinct result encoded once (`core.block.encode_results`) gives the root of
every result encoded on its own."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import compute_results_root, encode_results
from core.header import TxResult, TxStatus
from core.merkle import merkle_root
from core.tensor import Tensor
from core.types import Gas

pytestmark = pytest.mark.core

_OUT = (Tensor.from_numpy(np.arange(3, dtype=np.int64)),)
_results = st.builds(
    lambda status, gas, out, data, log: TxResult(status, Gas(gas), _OUT if out else (), data, log),
    st.sampled_from([TxStatus.OK, TxStatus.FAILED]), st.sampled_from([0, 1000, 21_000]), st.booleans(),
    st.sampled_from([b"", b"\x01"]), st.sampled_from(["", "insufficient balance"]))


@settings(max_examples=150)
@given(st.lists(_results, max_size=40))
def test_shared_encodings_give_the_root_of_each_result_encoded_alone(results: list[TxResult]) -> None:
    """Equal results arrive as distinct objects (decoded from a proposal); sharing one encoding among them
    changes no byte of any leaf, and so not the root."""
    decoded = tuple(TxResult.decode(r.encode()) for r in results)
    alone = [TxResult.decode(r.encode()).encode() for r in results]
    assert encode_results(decoded) == tuple(alone)
    assert compute_results_root(decoded) == merkle_root(alone)
    if decoded:
        changed = (*decoded[:-1], decoded[-1].replace(log=decoded[-1].log + "x"))
        assert compute_results_root(changed) != compute_results_root(decoded)

"""Tensor <-> numpy: the lookups that skip numpy's per-call work give what the general path gives."""

from __future__ import annotations

import numpy as np
import pytest

import core.tensor as tensor_module
from core.tensor import DType, Tensor

pytestmark = pytest.mark.core

_NAMES = ("bool", "uint8", "int8", "uint16", "int16", "int32", "uint32", "int64", "uint64", "float16", "float32",
          "float64")


@pytest.mark.parametrize("name", _NAMES)
def test_from_numpy_by_object_equals_by_name(name: str) -> None:
    expected = DType.from_name(name)
    for form in (np.dtype(name), np.dtype(name).newbyteorder("<"), np.dtype(name).newbyteorder(">"),
                 np.dtype(name).type, name):
        assert DType.from_numpy(form) is expected  # type: ignore[arg-type]


def test_from_numpy_refuses_what_has_no_tensor_dtype() -> None:
    for form in (np.dtype("complex64"), np.dtype("U3"), np.dtype([("a", "i4")])):
        with pytest.raises(ValueError, match="unsupported tensor dtype"):
            DType.from_numpy(form)


@pytest.mark.parametrize("name", _NAMES)
@pytest.mark.parametrize("little", [True, False])
def test_to_numpy_is_a_read_only_native_view_of_the_wire_bytes(name: str, little: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensor_module, "_LITTLE_ENDIAN", little)
    values = (np.arange(24) % 2).astype(name) if name == "bool" else np.arange(24).astype(name)
    t = Tensor.from_numpy(values.reshape(2, 3, 4))
    got = t.to_numpy()
    reference = np.frombuffer(t.data, np.dtype(name).newbyteorder("<")).reshape(2, 3, 4)
    assert got.shape == (2, 3, 4) and got.dtype.isnative and got.dtype.name == name
    np.testing.assert_array_equal(got, reference)
    assert not got.flags.writeable

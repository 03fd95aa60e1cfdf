"""Tensor: dtype, static shape and little-endian bytes. The only numeric container on the wire."""

from __future__ import annotations

import enum
import math
import sys
from typing import Annotated

import numpy as np

from core.codec import U32, MaxLen, Wire, wire
from core.errors import TooLarge
from core.limits import MAX_TENSOR_BYTES, MAX_TENSOR_DIMS


class DType(enum.IntEnum):
    BOOL = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    UINT32 = 7
    INT64 = 8
    UINT64 = 9
    FLOAT16 = 10
    FLOAT32 = 11
    FLOAT64 = 12

    @property
    def numpy(self) -> np.dtype[np.generic]:
        return _NUMPY_DTYPES[self._value_]

    @property
    def itemsize(self) -> int:
        # Looked up by value: decoding checks every tensor's byte length, and building the numpy dtype each
        # time cost more than the rest of the tensor's decoding.
        return _ITEMSIZES[self._value_]

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT16, DType.FLOAT32, DType.FLOAT64)

    @classmethod
    def from_numpy(cls, dtype: np.dtype[np.generic]) -> DType:
        found = _BY_NUMPY.get(dtype)  # a numpy dtype of its own: looked up without building its name
        if found is not None:
            return found
        try:
            return _BY_NAME[np.dtype(dtype).name]
        except KeyError:
            raise ValueError(f"unsupported tensor dtype {dtype}") from None

    @classmethod
    def from_name(cls, name: str) -> DType:
        try:
            return _BY_NAME[name]
        except KeyError:
            raise ValueError(f"unsupported tensor dtype {name!r}") from None


_NUMPY_NAMES = {
    DType.BOOL: "bool", DType.UINT8: "uint8", DType.INT8: "int8", DType.UINT16: "uint16",
    DType.INT16: "int16", DType.INT32: "int32", DType.UINT32: "uint32", DType.INT64: "int64",
    DType.UINT64: "uint64", DType.FLOAT16: "float16", DType.FLOAT32: "float32", DType.FLOAT64: "float64",
}
_BY_NAME = {name: dt for dt, name in _NUMPY_NAMES.items()}
_NUMPY_DTYPES: dict[int, np.dtype[np.generic]] = {
    int(dt): np.dtype(name).newbyteorder("<") for dt, name in _NUMPY_NAMES.items()
}
# The native-order and little-endian dtypes themselves (numpy's `name` is built in Python on each read: the
# VM turns each inference's outputs into tensors). Only dtype objects: an equal scalar type or string hashes
# otherwise, and goes by name.
_BY_NUMPY: dict[object, DType] = {
    **{np.dtype(name): dt for dt, name in _NUMPY_NAMES.items()},
    **{np.dtype(name).newbyteorder("<"): dt for dt, name in _NUMPY_NAMES.items()},
}
_LITTLE_ENDIAN = sys.byteorder == "little"
_ITEMSIZES: dict[int, int] = {value: dtype.itemsize for value, dtype in _NUMPY_DTYPES.items()}


@wire(max_bytes=MAX_TENSOR_BYTES + 256)
class Tensor(Wire):
    dtype: DType
    shape: Annotated[tuple[U32, ...], MaxLen(MAX_TENSOR_DIMS)]
    data: Annotated[bytes, MaxLen(MAX_TENSOR_BYTES)]

    def validate_wire(self) -> None:
        expected = math.prod(self.shape) * self.dtype.itemsize
        if len(self.data) != expected:
            raise ValueError(f"tensor data is {len(self.data)} bytes, shape {self.shape} needs {expected}")
        if self.dtype == DType.BOOL and any(b > 1 for b in self.data):
            raise ValueError("bool tensor bytes must be 0 or 1")

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_numpy(self) -> np.ndarray:
        """A read-only array view in native byte order."""
        if _LITTLE_ENDIAN:  # the wire's order: a view, without building a native dtype per call
            return np.frombuffer(self.data, dtype=_NUMPY_DTYPES[self.dtype._value_]).reshape(self.shape)
        arr = np.frombuffer(self.data, dtype=self.dtype.numpy).reshape(self.shape)
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> Tensor:
        arr = np.asarray(array)
        dtype = DType.from_numpy(arr.dtype)
        if arr.nbytes > MAX_TENSOR_BYTES:
            raise TooLarge(f"tensor of {arr.nbytes} bytes exceeds the cap of {MAX_TENSOR_BYTES}")
        data = np.ascontiguousarray(arr, dtype=dtype.numpy).tobytes()
        tensor = cls(dtype, tuple(int(d) for d in arr.shape), data)
        tensor.validate_wire()
        return tensor

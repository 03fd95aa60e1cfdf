"""JSON forms of core values: one rule for every wire type, so the API never drifts from the types.

Bytes travel as lowercase hex (no 0x), addresses as their bech32m text, enums by lowercase name, tensors as
{dtype, shape, data}. Values a client must check bit for bit (blocks, transactions, results, commits,
proofs) also travel as `raw`: hex of their one canonical encoding, which the typed client decodes.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from core.address import encode_address
from core.codec import Wire
from core.tensor import DType, Tensor
from core.types import Address, FixedBytes


def to_json(value: Any) -> Any:
    """A JSON-ready form of a core value (wire types, typed ids, tuples, enums, plain scalars)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Address):
        return encode_address(value)
    if isinstance(value, FixedBytes | bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Tensor):
        return tensor_to_json(value)
    if isinstance(value, Wire):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}  # type: ignore[arg-type]
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    raise TypeError(f"no JSON form for {type(value).__name__}")


def tensor_to_json(tensor: Tensor) -> dict[str, Any]:
    return {"dtype": tensor.dtype.numpy.name, "shape": list(tensor.shape), "data": tensor.data.hex()}


def tensor_from_json(obj: Any) -> Tensor:
    """Parse {dtype, shape, data}; raises ValueError with a one-line reason."""
    if not isinstance(obj, dict):
        raise ValueError("a tensor is an object {dtype, shape, data}")
    try:
        dtype = DType.from_name(str(obj["dtype"]))
        shape = tuple(int(d) for d in obj["shape"])
        data = bytes.fromhex(str(obj["data"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed tensor: {exc}") from None
    tensor = Tensor(dtype, shape, data)
    tensor.validate_wire()
    return tensor


def raw(value: Wire) -> str:
    """Hex of the canonical encoding."""
    return value.encode().hex()

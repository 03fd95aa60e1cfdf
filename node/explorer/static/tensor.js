// Tensors as the RPC sends them ({dtype, shape, data: little-endian hex}) turned into numbers for display.
import { fromHex } from "./verify.js";

const READERS = {
  bool: [1, (v, i) => v.getUint8(i) !== 0 ? 1 : 0],
  uint8: [1, (v, i) => v.getUint8(i)],
  int8: [1, (v, i) => v.getInt8(i)],
  uint16: [2, (v, i) => v.getUint16(i, true)],
  int16: [2, (v, i) => v.getInt16(i, true)],
  int32: [4, (v, i) => v.getInt32(i, true)],
  uint32: [4, (v, i) => v.getUint32(i, true)],
  int64: [8, (v, i) => v.getBigInt64(i, true).toString()],
  uint64: [8, (v, i) => v.getBigUint64(i, true).toString()],
  float16: [2, (v, i) => half(v.getUint16(i, true))],
  float32: [4, (v, i) => v.getFloat32(i, true)],
  float64: [8, (v, i) => v.getFloat64(i, true)],
};

function half(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

// The flat values of a tensor, in row-major order.
export function tensorValues(tensor) {
  const reader = READERS[tensor.dtype];
  if (!reader) throw new Error("unknown dtype " + tensor.dtype);
  const bytes = fromHex(tensor.data);
  const view = new DataView(bytes.buffer);
  const [size, read] = reader;
  const out = [];
  for (let i = 0; i + size <= bytes.length; i += size) out.push(read(view, i));
  return out;
}

// Rows for a grid: the last dimension is a row; everything before it is flattened into rows.
export function tensorRows(tensor) {
  const values = tensorValues(tensor);
  const width = tensor.shape.length ? Math.max(1, tensor.shape[tensor.shape.length - 1]) : 1;
  const rows = [];
  for (let i = 0; i < values.length; i += width) rows.push(values.slice(i, i + width));
  return rows;
}

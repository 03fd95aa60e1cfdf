// A small msgpack reader for Inferchain's canonical encoding (core/codec.py): arrays, ints, nil, bools,
// bin and str only (the wire has no maps, floats or extensions). Every decoded value keeps the byte range
// it came from, so sign-bytes can be cut from the exact bytes the node sent instead of re-encoded.

export class Node {
  constructor(value, start, end) { this.value = value; this.start = start; this.end = end; }
}

export function decode(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n) => { if (pos + n > bytes.length) throw new Error("msgpack: truncated"); };
  const uint = (n) => {
    need(n);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(bytes[pos + i]);
    pos += n;
    return v;
  };
  const num = (v) => (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const take = (n) => { need(n); const out = bytes.subarray(pos, pos + n); pos += n; return out; };
  const array = (n) => { const out = []; for (let i = 0; i < n; i++) out.push(item()); return out; };
  function item() {
    const start = pos;
    need(1);
    const b = bytes[pos++];
    let v;
    if (b <= 0x7f) v = b;
    else if (b >= 0xe0) v = b - 0x100;
    else if ((b & 0xf0) === 0x90) v = array(b & 0x0f);
    else if ((b & 0xe0) === 0xa0) v = new TextDecoder("utf-8", { fatal: true }).decode(take(b & 0x1f));
    else switch (b) {
      case 0xc0: v = null; break;
      case 0xc2: v = false; break;
      case 0xc3: v = true; break;
      case 0xc4: v = take(Number(uint(1))); break;
      case 0xc5: v = take(Number(uint(2))); break;
      case 0xc6: v = take(Number(uint(4))); break;
      case 0xcc: v = num(uint(1)); break;
      case 0xcd: v = num(uint(2)); break;
      case 0xce: v = num(uint(4)); break;
      case 0xcf: v = num(uint(8)); break;
      case 0xd0: need(1); v = view.getInt8(pos); pos += 1; break;
      case 0xd1: need(2); v = view.getInt16(pos); pos += 2; break;
      case 0xd2: need(4); v = view.getInt32(pos); pos += 4; break;
      case 0xd3: need(8); v = num(view.getBigInt64(pos)); pos += 8; break;
      case 0xd9: v = new TextDecoder("utf-8", { fatal: true }).decode(take(Number(uint(1)))); break;
      case 0xda: v = new TextDecoder("utf-8", { fatal: true }).decode(take(Number(uint(2)))); break;
      case 0xdc: v = array(Number(uint(2))); break;
      case 0xdd: v = array(Number(uint(4))); break;
      default: throw new Error("msgpack: type 0x" + b.toString(16) + " is not in the canonical encoding");
    }
    return new Node(v, start, pos);
  }
  const root = item();
  if (pos !== bytes.length) throw new Error("msgpack: trailing bytes");
  return root;
}

// The canonical (shortest) msgpack header of a UTF-8 string, followed by its bytes.
export function encodeStr(text) {
  const body = new TextEncoder().encode(text);
  const n = body.length;
  let head;
  if (n < 32) head = [0xa0 | n];
  else if (n < 256) head = [0xd9, n];
  else if (n < 65536) head = [0xda, n >> 8, n & 0xff];
  else throw new Error("string too long");
  const out = new Uint8Array(head.length + n);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

// The canonical header of an array of n items.
export function arrayHeader(n) {
  if (n < 16) return Uint8Array.of(0x90 | n);
  if (n < 65536) return Uint8Array.of(0xdc, n >> 8, n & 0xff);
  throw new Error("array too long");
}

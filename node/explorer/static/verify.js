// Checking an inference in the page, trusting nothing the node says but the validator set:
//   the header's id is SHA-256 of its canonical bytes; the result is leaf `index` of the header's
//   results_root and the tx hash leaf `index` of its txs_root (RFC 6962 Merkle proofs, core/merkle.py);
//   the commit is for that header; and the precommits for it carry valid Ed25519 signatures over their
//   sign-bytes (core/signing.py) from validators holding more than 2/3 of the set's power.
import { verifyAsync } from "./vendor/noble-ed25519.js";
import { arrayHeader, decode, encodeStr } from "./msgpack.js";

export const DOMAIN_VOTE = new TextEncoder().encode("inferchain/vote/v1\0");
export const PRECOMMIT = 2;

export function fromHex(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error("not hex");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export async function sha256(bytes) {
  if (!globalThis.crypto?.subtle) {
    throw new Error("the browser offers no WebCrypto here: open the explorer from 127.0.0.1, localhost or over https");
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
const innerHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

function split(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

// core.merkle.verify_merkle_proof: `item` is leaf `index` of `total` items under `root`.
export async function verifyMerkle(root, item, index, total, aunts) {
  if (!(index >= 0 && index < total)) return false;
  const left = [...aunts];
  async function climb(lo, hi) {
    if (hi - lo === 1) return leafHash(item);
    const k = split(hi - lo);
    if (index < lo + k) {
      const l = await climb(lo, lo + k);
      if (l === null || left.length === 0) return null;
      return innerHash(l, left.shift());
    }
    const r = await climb(lo + k, hi);
    if (r === null || left.length === 0) return null;
    return innerHash(left.shift(), r);
  }
  const computed = await climb(0, total);
  return computed !== null && left.length === 0 && equal(computed, root);
}

// A vote's sign-bytes: the domain tag, then the msgpack array [chain_id, every field but the signature].
// The fields are cut from the vote's own bytes (its array header dropped), so nothing is re-encoded.
export function voteSignBytes(voteBytes, voteNode, chainId) {
  const fields = voteNode.value;
  const first = fields[0].start - voteNode.start;
  const last = fields[fields.length - 2].end - voteNode.start;
  return concat(DOMAIN_VOTE, arrayHeader(fields.length), encodeStr(chainId), voteBytes.subarray(first, last));
}

// The parts of a commit: [height, round, block_id, [precommit, ...]], each precommit with its raw bytes.
export function decodeCommit(bytes) {
  const root = decode(bytes);
  const [height, round, blockId, votes] = root.value;
  return {
    height: height.value, round: round.value, blockId: blockId.value,
    precommits: votes.value.map((v) => {
      const f = v.value;
      return {
        node: v, bytes: bytes.subarray(v.start, v.end), type: f[0].value, height: f[1].value,
        blockId: f[3].value, validator: f[5].value, signature: f[7].value,
      };
    }),
  };
}

// `info`: the `inference` RPC answer; `validators`: the `validators` answer for its height (power by key).
// Answers {ok, reasons[], signedPower, totalPower, signers}.
export async function verifyInference(info, validators) {
  const reasons = [];
  const headerBytes = fromHex(info.header);
  const header = decode(headerBytes).value;
  const chainId = header[1].value;
  const height = header[2].value;
  const txsRoot = header[7].value;
  const resultsRoot = header[8].value;
  const blockId = await sha256(headerBytes);
  if (toHex(blockId) !== info.block_id) reasons.push("the header does not hash to the block id");
  const [rIndex, rTotal, rAunts] = decode(fromHex(info.result_proof)).value.map((n) => n.value);
  const [tIndex, tTotal, tAunts] = decode(fromHex(info.tx_proof)).value.map((n) => n.value);
  if (rIndex !== info.index || tIndex !== info.index) reasons.push("a proof is for another index");
  if (!await verifyMerkle(resultsRoot, fromHex(info.raw_result), rIndex, rTotal, rAunts.map((a) => a.value))) {
    reasons.push("the result is not under the header's results root");
  }
  const txHash = await sha256(fromHex(info.raw_tx));
  if (toHex(txHash) !== info.tx_hash) reasons.push("the transaction does not hash to its id");
  if (!await verifyMerkle(txsRoot, txHash, tIndex, tTotal, tAunts.map((a) => a.value))) {
    reasons.push("the transaction is not under the header's txs root");
  }
  const commit = decodeCommit(fromHex(info.commit));
  if (commit.height !== height || !equal(commit.blockId, blockId)) reasons.push("the commit is for another block");
  const power = new Map(validators.validators.map((v) => [v.public_key, Number(v.power)]));
  const totalPower = validators.validators.reduce((n, v) => n + Number(v.power), 0);
  let signedPower = 0;
  let signers = 0;
  for (const vote of commit.precommits) {
    const key = toHex(vote.validator);
    if (!power.has(key) || vote.type !== PRECOMMIT || vote.blockId === null || !equal(vote.blockId, blockId)) continue;
    const message = voteSignBytes(vote.bytes, vote.node, chainId);
    if (await verifyAsync(vote.signature, message, vote.validator)) {
      signedPower += power.get(key);
      signers += 1;
    }
  }
  const quorum = Math.floor((2 * totalPower) / 3) + 1;
  if (signedPower < quorum) reasons.push(`signatures hold ${signedPower} of ${totalPower} power, under 2/3`);
  return { ok: reasons.length === 0, reasons, signedPower, totalPower, signers, height };
}

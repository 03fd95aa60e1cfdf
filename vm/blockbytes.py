"""A block's encodings computed once: transaction bytes and hashes, result bytes, roots and exact size;
and the bound on a result's bytes that block building counts before the result exists.

Hashing and encoding dominate the VM's own cost per transaction, so build and validate compute each
transaction's and result's bytes once and derive from them everything core.block would recompute: the
transaction root, the results root and the block's encoded size (msgpack arrays are concatenative: an
array's encoding is its length header followed by its items' encodings).

The consensus rule is the block's exact size (validate). The builder must decide whether a transaction fits
before it executes it, so it counts `compute_result_bound` then, and the exact result once execution wrote
it (every result but a model's work is final at that point). An inference whose model work is still to run
counts `compute_infer_result_bound`: its resolution writes either the declared outputs or a short failure
code, never a log at the cap (that reserve held blocks of tiny inferences to a third of their byte room:
docs/performance-throughput.md, "Tiny inference on the devnet").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgpack

from core.block import (
    Block,
    compute_evidence_hash,
    compute_last_commit_hash,
    encode_results,
    is_results_count_ok,
)
from core.errors import InvalidBlock
from core.evidence import Evidence
from core.header import TxResult
from core.limits import MAX_LOG_BYTES, MAX_RESULT_DATA_BYTES, MAX_TENSOR_DIMS
from core.merkle import merkle_root
from core.tx import Transaction
from core.types import Hash32
from vm.state import ModelRecord
from vm.txs import TensorSpec, TxKind, infer_payload

# A committed float output element is an int64 on the model's grid; other dtypes keep their own width.
_GRID_ITEM_BYTES = 8
# The longest failure code an inference's resolution writes (vm.engine.infer_resolution: an error class
# name, e.g. "OutputTooLarge"). A longer one would only make the builder trim its block (vm.build.finish).
INFER_CODE_BYTES = 64


def array_header_size(n: int) -> int:
    return 1 if n <= 15 else 3 if n <= 0xFFFF else 5


def uint_size(n: int) -> int:
    """msgpack's encoding of a non-negative integer."""
    return 1 if n < 0x80 else 2 if n <= 0xFF else 3 if n <= 0xFFFF else 5 if n <= 0xFFFF_FFFF else 9


def bin_size(n: int) -> int:
    """msgpack's encoding of `n` raw bytes."""
    return n + (2 if n <= 0xFF else 3 if n <= 0xFFFF else 5)


def str_size(n: int) -> int:
    """msgpack's encoding of a string of `n` UTF-8 bytes."""
    return n + (1 if n <= 31 else 2 if n <= 0xFF else 3 if n <= 0xFFFF else 5)


def compute_output_bound(spec: TensorSpec) -> int:
    """The most bytes one committed output of this declared shape encodes to ([dtype, shape, data])."""
    elements = 1
    for d in spec.shape:
        elements *= int(d)
    item = _GRID_ITEM_BYTES if spec.dtype.is_float else spec.dtype.itemsize
    return (array_header_size(3) + 1 + array_header_size(MAX_TENSOR_DIMS) + 5 * len(spec.shape)
            + bin_size(elements * item))


def compute_result_bound(gas_limit: int, outputs: Sequence[TensorSpec] = (),
                         data_bytes: int = MAX_RESULT_DATA_BYTES) -> int:
    """The most bytes a transaction's result can encode to: status, gas used (at most its limit), the
    outputs declared for its model (an inference; none otherwise), kind data up to `data_bytes` and a log
    at its cap."""
    return (array_header_size(5) + 1 + uint_size(gas_limit)
            + array_header_size(len(outputs)) + sum(compute_output_bound(s) for s in outputs)
            + bin_size(data_bytes) + str_size(MAX_LOG_BYTES))


def compute_infer_result_bound(gas_limit: int, outputs: Sequence[TensorSpec]) -> int:
    """The most bytes an inference's result takes once its model work is resolved: status, gas used, then
    either the declared outputs with an empty log, or no outputs and a failure code (vm.apply.final_result);
    no kind data. Counted by the builder for an executed inference whose work has not run yet."""
    return (array_header_size(5) + 1 + uint_size(gas_limit)
            + array_header_size(len(outputs)) + sum(compute_output_bound(s) for s in outputs)
            + bin_size(0) + str_size(INFER_CODE_BYTES))


def get_result_bound(tx: Transaction, model: Callable[[Hash32], ModelRecord | None]) -> int:
    """`compute_result_bound` for `tx` before it executes; `model` looks a model up in the state the
    transaction will run on (an inference's outputs are those its model declares)."""
    if tx.kind != TxKind.INFER:
        return compute_result_bound(tx.gas_limit)
    payload = infer_payload(tx)  # decoded once per transaction (vm.txs.decoded_payload)
    record = None if payload is None else model(payload.model_id)  # None: fails with a log, no outputs
    # An inference's result carries outputs or a log, never kind data (vm.apply.final_result).
    return compute_result_bound(tx.gas_limit, () if record is None else record.meta.outputs, data_bytes=0)


@dataclass(frozen=True, slots=True)
class TxBytes:
    raw: bytes
    hash: Hash32


def tx_bytes(tx: Transaction) -> TxBytes:
    # Both cached on the transaction (CachedWire): one the mempool or gossip already hashed costs nothing.
    return TxBytes(tx.encode(), tx.hash)


def result_raws(results: Sequence[TxResult]) -> tuple[bytes, ...]:
    """Each result's encoding, each distinct value encoded once (`core.block.encode_results`)."""
    return encode_results(results)


def txs_root(hashes: Sequence[Hash32]) -> Hash32:
    """= core.block.compute_txs_root (Merkle root over the transaction hashes)."""
    return merkle_root(hashes)


def results_root(raws: Sequence[bytes]) -> Hash32:
    """= core.block.compute_results_root (Merkle root over the encoded results)."""
    return merkle_root(raws)


def block_size(header_raw: bytes, tx_raws: Sequence[bytes], result_raws: Sequence[bytes],
               commit_raw: bytes | None, evidence_raws: Sequence[bytes]) -> int:
    """= len(Block(...).encode()), from the parts' encodings (commit None encodes as msgpack nil)."""
    return (array_header_size(5) + len(header_raw)
            + array_header_size(len(tx_raws)) + sum(len(r) for r in tx_raws)
            + array_header_size(len(result_raws)) + sum(len(r) for r in result_raws)
            + (1 if commit_raw is None else len(commit_raw))
            + array_header_size(len(evidence_raws)) + sum(len(r) for r in evidence_raws))


@dataclass(frozen=True, slots=True)
class BlockBytes:
    """A received block's parts, encoded once."""

    txs: tuple[TxBytes, ...]
    results: tuple[bytes, ...]
    size: int


def get_block_bytes(block: Block, *, body_checked: bool = False) -> BlockBytes:
    """core.block.Block.validate_basic with every encoding done once; raises InvalidBlock the same way.

    `body_checked`: the caller already ran `validate_basic` on this very block object (a node checks every
    proposal when it arrives: `node.blockcheck.BlockChecks`), so the header's hashes are not compared with
    the body a second time; the parts' bytes and the size are computed all the same."""
    h = block.header
    if not is_results_count_ok(len(block.txs), len(block.results)):
        raise InvalidBlock(f"block {h.height}: {len(block.txs)} txs but {len(block.results)} results")
    txs = tuple(tx_bytes(tx) for tx in block.txs)
    results = result_raws(block.results)
    if not body_checked:
        validate_parts(block, txs, results)
    size = block_size(h.encode(), [t.raw for t in txs], results,
                      None if block.last_commit is None else block.last_commit.encode(),
                      [evidence_raw(e) for e in block.evidence])
    return BlockBytes(txs, results, size)


def validate_parts(block: Block, txs: Sequence[TxBytes], results: Sequence[bytes]) -> None:
    """The rest of `validate_basic` from the parts' encodings: the header's hashes match the body and every
    transaction is for the header's chain. Raises InvalidBlock."""
    h = block.header
    if txs_root([t.hash for t in txs]) != h.txs_root:
        raise InvalidBlock(f"block {h.height}: txs_root does not match the transactions")
    if results_root(results) != h.results_root:
        raise InvalidBlock(f"block {h.height}: results_root does not match the results")
    if compute_last_commit_hash(block.last_commit) != h.last_commit_hash:
        raise InvalidBlock(f"block {h.height}: last_commit_hash does not match the last commit")
    if compute_evidence_hash(block.evidence) != h.evidence_hash:
        raise InvalidBlock(f"block {h.height}: evidence_hash does not match the evidence")
    if (h.height == 1) != (block.last_commit is None):
        raise InvalidBlock(f"block {h.height}: last commit must be absent exactly at height 1")
    if block.last_commit is not None and (block.last_commit.height != h.height - 1
                                          or block.last_commit.block_id != h.last_block_id):
        raise InvalidBlock(f"block {h.height}: last commit is not for the previous block")
    for tx in block.txs:
        if tx.chain_id != h.chain_id:
            raise InvalidBlock(f"block {h.height}: transaction {tx.hash.hex()[:16]} is for another chain")



def evidence_raw(evidence: Evidence) -> bytes:
    """The encoding of one evidence item inside a block (a tagged union member: [tag, fields])."""
    return msgpack.packb([evidence.TAG, evidence.to_obj()], use_bin_type=True)  # type: ignore[no-any-return]

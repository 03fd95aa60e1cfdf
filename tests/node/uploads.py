"""The signed chunk transactions of a model upload, as a client builds them (each chunk's gas quoted by
`vm.execute.chunk_gas`, the completing one's with its registration), for node tests that send them over RPC."""

from __future__ import annotations

from core.keys import PrivateKey
from core.tx import Transaction
from vm.execute import chunk_gas, completing_gas
from vm.params import Params
from vm.txs import ModelMeta, build_tx, split_model


def upload_txs(params: Params, key: PrivateKey, chain_id: str, nonce: int, body: bytes, meta: ModelMeta,
               n_chunks: int | None = None) -> list[Transaction]:
    """The first `n_chunks` (default: all) chunk transactions of `body` registered as `meta`, from `key` at
    consecutive nonces from `nonce`, each paying its gas at `vm.min_gas_price`."""
    chunks = split_model(body, meta, 256 * 1024)
    txs = []
    for i, chunk in enumerate(chunks[:n_chunks]):
        last = i == len(chunks) - 1
        gas = chunk_gas(params, chunk, len(body), last, registration=completing_gas(params, body, meta) if last else 0)
        txs.append(build_tx(key, chunk, chain_id=chain_id, nonce=nonce + i, gas_limit=gas,
                            fee=gas * params.vm.min_gas_price))
    return txs

"""Junk transaction bench: CPU per validly signed transaction from an unfunded key, at one gossip hop.

    python -m bench.junk_txs [--txs 2800]

Baseline: what a node did before the transactions hook (issue 9.3): the batch envelope check verified every
signature, then each transaction went to the mempool, which refused it; the batch was relayed, so every hop
paid the same. Ours: the envelope only decodes and `TxAdmission` looks at the sender's committed balance
before any signature check; the batch is not relayed. Both on one batch, in this process, real LevelDB.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio
from libp2p.peer.id import ID

from core.hashing import sha256
from core.keys import PrivateKey
from core.types import Amount
from node.config import NodeConfig, RPCSection
from node.gossip_hooks import TxAdmission, defer_signature_check
from node.home import init_home
from node.service import Node, _MempoolState
from node.sigcache import SigCache
from p2p.envelope import decode_tx_batch
from p2p.messages import TxBatch
from p2p.topics import TopicKind
from p2p.validation import GossipMessage
from tools.genesis import make_genesis
from vm.sandbox.executor import LocalExecutor
from vm.txs import Transfer, build_tx

PEER = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--txs", type=int, default=2800)
    n = parser.parse_args().txs
    with tempfile.TemporaryDirectory() as tmp:
        home = init_home(Path(tmp) / "n", make_genesis(4), config=NodeConfig(rpc=RPCSection(enabled=False)),
                         node_key_seed=b"bench", generate_validator_key=False)
        node = Node(home, executor=LocalExecutor())
        try:
            keys = [PrivateKey.derive("bench junk", "account", i) for i in range(256)]
            txs = [build_tx(keys[i % 256], Transfer(keys[0].address, Amount(1)), chain_id=node.chain_id,
                            nonce=i // 256, gas_limit=10_000, fee=10_000) for i in range(n)]
            data = TxBatch(tuple(txs)).encode()

            start = time.process_time()
            batch = decode_tx_batch(data, node.chain_id, verify=SigCache().verify)
            for tx in batch.txs:
                node.mempool.add(tx, signature_checked=True)
            before = (time.process_time() - start) / n

            admission = TxAdmission(_MempoolState(node.app).account, node.mempool, SigCache())

            async def hook() -> tuple[float, str]:
                start = time.process_time()
                decoded = decode_tx_batch(data, node.chain_id, verify=defer_signature_check)
                verdict = await admission(GossipMessage(TopicKind.TXS, data, decoded, sha256(data), PEER, PEER))
                return (time.process_time() - start) / n, verdict.name

            after, verdict = trio.run(hook)
        finally:
            node.close()
    print(f"junk tx bench: one batch of {n} validly signed transfers from 256 unfunded keys, one hop")
    print(f"  before (verify all, mempool refuses, relayed)  {before * 1e6:8.1f} us CPU per tx")
    print(f"  after  (TxAdmission: balance first; {verdict:<6})   {after * 1e6:8.1f} us CPU per tx, "
          f"{admission.signatures_checked} signatures checked, not relayed")
    print(f"  ratio after / before                           {after / before:8.2f}")


if __name__ == "__main__":
    main()

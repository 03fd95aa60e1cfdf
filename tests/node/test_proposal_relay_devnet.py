"""A real 4-validator devnet whose node 0 gossips its clients' transactions late (a 3 s batch delay: what a
loaded node's batcher and its peers' gossip backlog do, docs/performance-throughput.md "Proposals that name what
validators lack"): node 0's proposals must never name its clients' transactions before they have gone out in
a gossip batch (node.proposal_hold), so no validator has to fetch a transaction its gossip cannot have
brought yet; and the held transactions still commit."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator

import pytest

from core.types import Amount
from node.client import Client
from node.config import load_config, write_config
from tests.realnet import RealNet
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.node

SLOW_GOSSIP_S = 3.0  # node 0's batch delay: its clients' transactions reach peers at least this late
SENDERS = 12
NONCES = 10
ASKED = re.compile(r"a peer asked for (\d+) transactions: (\d+) of our clients' not yet gossiped")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNet]:
    net = RealNet(tmp_path_factory.mktemp("hold"), validators=4, block_time_ms=200, accounts=10 + SENDERS)
    with net:
        net.devnet.prepare()
        path = net.spec(0).home / "config.toml"
        cfg = load_config(path)
        write_config(path, cfg.replace(mempool=dataclasses.replace(cfg.mempool, gossip_batch_delay_s=SLOW_GOSSIP_S)))
        net.start()
        net.wait_height(2, timeout=120)
        yield net


def test_a_proposer_never_names_its_clients_transactions_before_gossiping_them(net: RealNet) -> None:
    c0 = net.client(0)
    chain_id = c0.status().chain_id
    senders = [net.account_key(10 + i) for i in range(SENDERS)]
    to = net.account_key(9).address
    start = {bytes(k.address): c0.account(k.address).nonce for k in senders}
    # Sent over ~4 s, so that node 0 proposes while some of them still wait in its slow batcher.
    with Client(net.spec(0).rpc_url, timeout=30) as client:
        for n in range(NONCES):
            txs = [build_tx(k, Transfer(to, Amount(1)), chain_id=chain_id, nonce=start[bytes(k.address)] + n,
                            gas_limit=1000, fee=1000) for k in senders]
            verdicts = client.broadcast_txs(txs)
            assert all(v.accepted for v in verdicts), verdicts
            time.sleep(0.4)
    net.wait_until("every transfer committed on node 0",
                   lambda: all(c0.account(k.address).nonce == start[bytes(k.address)] + NONCES for k in senders), 120)
    log = net.spec(0).log_path.read_text(errors="replace")
    asks = [(int(m.group(1)), int(m.group(2))) for m in ASKED.finditer(log)]
    assert all(unpublished == 0 for _, unpublished in asks), asks
    assert "held back" in log  # node 0 built proposals while its clients' transactions waited to go out

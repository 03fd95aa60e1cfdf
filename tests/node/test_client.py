"""The typed client against a real server: typed results, proofs it can check itself, typed errors."""

from __future__ import annotations

import socket

import pytest

from core.address import encode_address
from core.types import Address, Hash32
from node.client import Client, NodeUnreachable, RpcError
from node.rpc import errors as E
from tests.node.rpc_harness import ServerThread
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node


@pytest.fixture
def served(chain: SimChain):
    def auto() -> None:
        if chain.pending:
            chain.produce()

    with ServerThread(chain, autoproduce=auto) as s:
        yield s


@pytest.fixture
def client(served):
    with Client(served.url) as c:
        yield c


def test_status_and_blocks_are_typed(served, client: Client, chain: SimChain) -> None:
    served.on_loop(chain.produce)
    status = client.status()
    assert status.height == 1 and status.chain_id == chain.status().chain_id
    info = client.block(1)
    assert info.block == chain.blocks[0]
    assert info.commit == chain.commits[1]
    assert client.block().height == 1


def test_block_hashes_are_the_blocks_own(served, client: Client, chain: SimChain) -> None:
    served.on_loop(chain.produce)
    def transfers_then_produce() -> None:  # on the loop, in one go: the autoproducer cannot split the block
        for i in range(2):  # senders 0, 1 (the pending one counted in the nonce) to account 2
            chain.pending.append(chain.transfer(i % 2, chain.account_keys[2].address, 3))
        chain.produce()

    served.on_loop(transfers_then_produce)
    block = chain.blocks[1]
    got = client.block_hashes(2)
    assert got.height == 2 and got.id == bytes(block.id) and got.time_ms == int(block.header.time)
    assert got.tx_hashes == tuple(bytes(tx.hash) for tx in block.txs) and len(got.tx_hashes) == 2
    assert got.tx_bytes == sum(len(tx.encode()) for tx in block.txs)
    assert block.last_commit is not None
    assert (got.last_round, got.last_precommits) == (int(block.last_commit.round), len(block.last_commit.precommits))
    assert client.block_hashes(1).tx_hashes == () and client.block_hashes(1).last_precommits == 0
    assert client.block_hashes().height == 2


def test_commit_mode_transfer_moves_funds_and_the_account_proof_verifies(served, client: Client,
                                                                         chain: SimChain) -> None:
    to = chain.account_keys[2].address
    tx = served.on_loop(lambda: chain.transfer(0, to, 1234))
    result = client.broadcast_tx(tx, mode="commit", timeout=10)
    assert result.accepted and result.result is not None and result.result.ok
    assert result.height is not None
    acc = client.account(to)
    assert acc.balance == 10**12 + 1234
    # Check the proof against the state root committed in the header of that height, not the node's word.
    header = client.block(acc.height).header
    assert acc.verify(header.state_root)
    assert not acc.verify(bytes(Hash32(b"\x01" * 32)))
    forged = type(acc)(acc.address, acc.height, acc.state_root, acc.exists, acc.balance + 1, acc.nonce,
                       acc.key, acc.value[:-1] + bytes([acc.value[-1] ^ 1]), acc.proof)
    assert not forged.verify(header.state_root)
    tx_info = client.tx(tx.hash)
    assert tx_info.tx == tx and tx_info.height == result.height


def test_absent_account_has_an_exclusion_proof(served, client: Client) -> None:
    acc = client.account(encode_address(Address(b"\x00" * 20)))
    assert not acc.exists and acc.value is None
    assert acc.verify()


def test_inference_result_verifies_against_results_root_and_the_signed_commit(served, client: Client,
                                                                              chain: SimChain) -> None:
    tx = served.on_loop(lambda: chain.infer(1, [1.5, -2.0, 3.0]))
    client.broadcast_tx(tx, mode="commit", timeout=10)
    info = client.inference(tx.hash)
    assert info.outputs[0].to_numpy().tolist() == [3.0, -4.0, 6.0]
    vset = client.validators().validator_set()
    assert info.verify(vset)
    # A commit that does not reach 2/3 of the power is refused.
    weak = info.commit.replace(precommits=info.commit.precommits[:2])
    assert not type(info)(info.tx, info.result, info.height, info.index, info.header, info.tx_proof,
                          info.result_proof, weak).verify(vset)
    # A result that is not the one under the root is refused.
    other = info.result.replace(log="tampered")
    assert not type(info)(info.tx, other, info.height, info.index, info.header, info.tx_proof,
                          info.result_proof, info.commit).verify()


def test_broadcast_batch_is_typed_and_refusals_carry_reasons(served, client: Client, chain: SimChain) -> None:
    to = chain.account_keys[1].address
    a = served.on_loop(lambda: chain.transfer(0, to, 1, nonce=0))
    b = served.on_loop(lambda: chain.transfer(0, to, 1, nonce=1))
    bad = served.on_loop(lambda: chain.transfer(2, to, 1)).replace(chain_id="elsewhere")
    results = client.broadcast_txs([a, b, bad], mode="commit", timeout=10)
    assert [r.accepted for r in results] == [True, True, False]
    assert results[0].result is not None and results[0].result.ok
    assert "chain" in (results[2].error or "")


def test_server_errors_become_rpc_errors_with_the_servers_message(served, client: Client,
                                                                 chain: SimChain) -> None:
    with pytest.raises(RpcError) as info:
        client.block(42)
    assert info.value.code == E.NOT_FOUND and "42" in str(info.value)
    served.api.refuse_reason = "sender balance does not cover the fee"
    tx = served.on_loop(lambda: chain.transfer(0, chain.account_keys[1].address, 1))
    with pytest.raises(RpcError) as refused:
        client.broadcast_tx(tx)
    assert refused.value.code == E.TX_REJECTED
    assert "balance does not cover the fee" in str(refused.value)


def test_batch_calls_return_results_and_errors_in_order(served, client: Client) -> None:
    out = client.call_batch([("health", {}), ("block", {"height": 7}), ("status", {})])
    assert out[0]["ok"] is True
    assert isinstance(out[1], RpcError) and out[1].code == E.NOT_FOUND
    assert out[2]["height"] == 0


def test_unreachable_node_is_one_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", timeout=2) as client, pytest.raises(NodeUnreachable) as info:
        client.status()
    assert f"127.0.0.1:{port}" in str(info.value) and "\n" not in str(info.value)


def test_wait_for_height_times_out_with_a_clear_error(served, client: Client) -> None:
    with pytest.raises(RpcError) as info:
        client.wait_for_height(1000, timeout=0.3, poll=0.05)
    assert info.value.code == E.TIMEOUT


def test_the_client_drops_idle_connections_before_the_node_closes_them() -> None:
    """A pooled connection reused as the node closes it is reset with the request unread: the client lets
    idle connections go before the node's keep-alive timeout can close them under it."""
    from node.client import KEEPALIVE_S
    from node.rpc.server import KEEP_ALIVE_S

    with Client("http://127.0.0.1:9") as c:
        pool = c._http._transport._pool
        assert pool._keepalive_expiry == KEEPALIVE_S < KEEP_ALIVE_S / 2

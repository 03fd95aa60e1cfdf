"""The node's mempool keeps the VM parameters per height (node.service._MempoolState.follow): one read of
the committed parameters per height instead of one per admission and per recheck, and a governance change
is applied as soon as the mempool moves to the height that committed it. Real LevelDB state."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Amount, Hash32
from tests.node.helpers import account, genesis_doc, local_node, make_home, transfer
from vm.execute import decode_payload
from vm.state import KEY_PARAMS
from vm.txs import Infer, Transfer, TxKind, build_tx, infer_payload

pytestmark = pytest.mark.node


def test_the_mempool_applies_a_parameter_change_once_it_reaches_its_height(tmp_path: Path) -> None:
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    try:
        key, sink = account(1), account(2)
        params = node.app.current_params()
        price = int(params.vm.min_gas_price)
        first = transfer(node.chain_id, key, sink, 5, 0, gas_limit=1000)
        assert first.fee == 1000 * price, "the helper pays exactly the minimum price"
        assert node.mempool.add(first).added
        # Governance doubles the minimum gas price in the next committed state.
        view = node.app.view()
        view.put(KEY_PARAMS, params.replace(vm=params.vm.replace(min_gas_price=Amount(2 * price))))
        height = node.app.last_height + 1
        update = view.compute_update(node.app.state_map, height)
        with node.db.write_batch() as batch:
            node.app.state_map.stage(batch, update)
        assert node.app.current_params().vm.min_gas_price == 2 * price
        second = transfer(node.chain_id, key, sink, 5, 1, gas_limit=1000)
        # Until the mempool moves to that height it judges against the state it was checked against.
        assert node.mempool.add(second).added
        node.mempool.update(height, [])
        third = transfer(node.chain_id, key, sink, 5, 2, gas_limit=1000)
        refused = node.mempool.add(third)
        assert not refused.accepted and "below gas_limit x min_gas_price" in refused.reason
        dearer = build_tx(key, Transfer(sink.address, Amount(5)), chain_id=node.chain_id, nonce=2,
                          gas_limit=1000, fee=2000 * price)
        assert node.mempool.add(dearer).added
    finally:
        node.app.close()
        node.db.close()


def test_malformed_and_oversized_inferences_are_still_refused(tmp_path: Path) -> None:
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    try:
        key = account(1)
        vm = node.app.current_params().vm
        garbled = Transaction.create(key, chain_id=node.chain_id, nonce=0, gas_limit=1000,
                                     fee=1000 * int(vm.min_gas_price), kind=int(TxKind.INFER),
                                     payload=b"\xc1not an inference")
        assert node.mempool.add(garbled).reason.startswith("malformed payload")
        # The refusal is kept on the transaction with its decode (vm.txs.decoded_payload): the same every time.
        assert decode_payload(garbled) == node.mempool.add(garbled).reason and infer_payload(garbled) is None
        unknown = garbled.replace(kind=999, payload=b"")
        assert decode_payload(unknown) == "unknown transaction kind 999"
        model = next(m for m in node.genesis.models if not m.poi)
        half = int(vm.max_infer_input_bytes) // 2 + 1  # two tensors, each under the tensor cap, over it in all
        big = Tensor(DType.UINT8, (half,), bytes(half))
        over = build_tx(key, Infer(Hash32(bytes(model.model_id)), (big, big), Amount(0)), chain_id=node.chain_id,
                        nonce=0, gas_limit=1000, fee=1000 * int(vm.min_gas_price))
        assert node.mempool.add(over).reason == f"inputs exceed {vm.max_infer_input_bytes} bytes"
    finally:
        node.app.close()
        node.db.close()

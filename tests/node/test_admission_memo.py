"""What the admission path computes once instead of per use: a transaction's decoded payload (kept on the
transaction object, `vm.txs.decoded_payload`), and the mempool's state view (one per mempool height,
`node.service._MempoolState.account`). Real LevelDB state, the real VM rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Hash32
from tests.node.helpers import account, genesis_doc, infer_digits_int8, local_node, make_home, transfer
from vm import txs as vm_txs
from vm.blockbytes import get_result_bound
from vm.execute import decode_payload
from vm.txs import Infer, TxKind, decoded_payload, infer_payload

pytestmark = pytest.mark.node


class _CountingInfer:
    """Stands for `Infer` in the payload table: counts decodes."""

    def __init__(self) -> None:
        self.decodes = 0

    def decode(self, data: bytes) -> Infer:
        self.decodes += 1
        return Infer.decode(data)


def test_an_inference_payload_is_decoded_once_per_transaction(tmp_path: Path, monkeypatch: Any) -> None:
    counting = _CountingInfer()
    monkeypatch.setitem(vm_txs.PAYLOAD_TYPES, TxKind.INFER, counting)
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    try:
        tx = infer_digits_int8(node.chain_id, account(1), 0)
        # Admission, the builder's result bound, execution's decode and the model pre-filter all ask.
        assert node.mempool.add(tx).added
        view = node.app.view()
        assert get_result_bound(tx, view.model) > 0
        payload = decode_payload(tx)
        assert isinstance(payload, Infer) and infer_payload(tx) is payload
        assert counting.decodes == 1
        # The same bytes in another object (a block decoded from the store) decode for themselves.
        again = Transaction.decode(tx.encode())
        assert decoded_payload(again) == payload and counting.decodes == 2
        # A replaced transaction starts with an empty memo.
        other = tx.replace(payload=Infer(Hash32(bytes(32)), (), payload.max_model_fee).encode())
        assert infer_payload(other) is not None and infer_payload(other) != payload and counting.decodes == 3
        # A payload over the memo's size is decoded on each use: no second copy of large inputs is kept.
        big = Tensor(DType.UINT8, (vm_txs.MEMO_PAYLOAD_BYTES,), bytes(vm_txs.MEMO_PAYLOAD_BYTES))
        large = tx.replace(payload=Infer(payload.model_id, (big,), payload.max_model_fee).encode())
        assert infer_payload(large) == infer_payload(large) and counting.decodes == 5
    finally:
        node.app.close()
        node.db.close()


def test_the_mempool_reads_accounts_through_one_view_per_height(tmp_path: Path, monkeypatch: Any) -> None:
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    try:
        views = 0
        make_view = node.app.view

        def counting_view(version: int | None = None) -> Any:
            nonlocal views
            views += 1
            return make_view(version)

        monkeypatch.setattr(node.app, "view", counting_view)
        sink = account(9)
        for i in range(3):  # three new senders: three committed-account reads at one height
            assert node.mempool.add(transfer(node.chain_id, account(i), sink, 5, 0)).added
        assert views == 1
        node.mempool.update(node.mempool.height + 1, [])
        assert node.mempool.add(transfer(node.chain_id, account(3), sink, 5, 0)).added
        assert views == 2
    finally:
        node.app.close()
        node.db.close()

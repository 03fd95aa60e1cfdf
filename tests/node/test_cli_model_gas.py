"""The CLI's gas quote for a registration and for the model's first call in a block (`node.cli.model_cmd`)
equals what the chain charges (the real VM on LevelDB, two nodes), and a model whose first call could never
fit one transaction is refused before anything is signed (`uncallable`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from core.tensor import Tensor
from node.cli.common import CliError
from node.cli.model_cmd import _gas_quote, uncallable
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import wide_meta, wide_model
from vm.execute import infer_gas

pytestmark = pytest.mark.node


def _vm_dict(net: Devnet) -> dict[str, object]:
    """The VM parameters as the node publishes them to the CLI (genesis JSON form)."""
    vm = net.genesis.params.vm
    out: dict[str, object] = {f.name: getattr(vm, f.name) for f in dataclasses.fields(vm)
                              if f.name not in ("sandbox_limits", "gas_schedule")}
    out["gas_schedule"] = [{"name": item.name, "value": int(item.value)} for item in vm.gas_schedule]
    return json.loads(json.dumps(out, default=int))


def test_the_quote_is_what_the_chain_charges_and_an_uncallable_model_is_refused(tmp_path: Path) -> None:
    net = Devnet.start(tmp_path, devnet_genesis(4), nodes=2)
    try:
        owner = net.account(5)
        model_bytes = wide_model()
        meta = wide_meta(model_bytes)
        vm = _vm_dict(net)
        quote = _gas_quote(vm, model_bytes, meta)
        model_id = net.register(owner, model_bytes, meta)
        record = net.apps[0].view().model(model_id)
        assert record is not None
        x = (Tensor.from_numpy(np.array([[3]], np.int32)),)
        assert quote.first_call == infer_gas(net.genesis.params, record, x, first_use=True)
        uncallable({**vm, "max_tx_gas": quote.first_call}, quote)  # exactly fits: no refusal
        with pytest.raises(CliError, match="no inference on it could be included"):
            uncallable({**vm, "max_tx_gas": quote.first_call - 1}, quote)
    finally:
        net.close()

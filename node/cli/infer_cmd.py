"""`inferchain infer MODEL INPUT`: submit an inference, wait for finality, check its proof, print outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from core.tensor import Tensor
from core.types import Amount, Hash32
from node.cli.chainctx import chain_context
from node.cli.common import CliError, echo_json, echo_pairs, load_signing_key, tx_options
from node.cli.model_cmd import resolve_model_id
from node.cli.tx_cmd import submit
from node.client import Client
from vm.state import ModelRecord
from vm.txs import Infer, TensorSpec, build_tx


def load_inputs(path: Path, specs: tuple[TensorSpec, ...]) -> tuple[Tensor, ...]:
    """Inputs from .npy (one input), .npz (by input name) or JSON ({name: nested list} or a nested list for a
    single input), cast to each declared dtype and checked against the declared shape."""
    suffix = path.suffix.lower()
    arrays: dict[str, Any]
    try:
        if suffix == ".npy":
            arrays = {"": np.load(path, allow_pickle=False)}
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        elif suffix == ".json":
            doc = json.loads(path.read_text())
            arrays = {k: np.asarray(v) for k, v in doc.items()} if isinstance(doc, dict) else {"": np.asarray(doc)}
        else:
            raise CliError(f"{path}: inputs must be .npy, .npz or .json")
    except (ValueError, json.JSONDecodeError) as exc:
        raise CliError(f"{path}: cannot read inputs ({' '.join(str(exc).split())})") from None
    out = []
    for i, spec in enumerate(specs):
        if spec.name in arrays:
            arr = arrays[spec.name]
        elif "" in arrays and len(specs) == 1:
            arr = arrays[""]
        elif len(arrays) == len(specs) and suffix == ".npz":
            arr = list(arrays.values())[i]
        else:
            raise CliError(f"{path}: no array for the model input {spec.name!r} (have: {', '.join(arrays) or 'none'})")
        arr = np.asarray(arr)
        if arr.shape != tuple(spec.shape) and arr.size == int(np.prod(spec.shape)):
            arr = arr.reshape(tuple(spec.shape))
        if arr.shape != tuple(spec.shape):
            raise CliError(f"input {spec.name!r} has shape {arr.shape}; the model takes {tuple(spec.shape)}")
        target = spec.dtype.numpy
        if arr.dtype.kind == "f" and target.kind in "iub" and not np.all(np.equal(np.mod(arr, 1), 0)):
            raise CliError(f"input {spec.name!r} holds fractions; the model takes {target.name}")
        out.append(Tensor.from_numpy(arr.astype(target)))
    return tuple(out)


def decode_outputs(record: ModelRecord, outputs: tuple[Tensor, ...]) -> list[dict[str, Any]]:
    """Committed outputs as numbers: float outputs are on the grid q = round(y * 2^k), shown as q / 2^k."""
    meta = record.meta
    decoded = []
    for spec, tensor in zip(meta.outputs, outputs, strict=False):
        values = tensor.to_numpy()
        if spec.dtype.is_float:
            values = values.astype(np.float64) / float(2 ** meta.grid_k)
        decoded.append({"name": spec.name, "dtype": spec.dtype.numpy.name, "shape": list(tensor.shape),
                        "values": values.tolist()})
    return decoded


@click.command()
@click.argument("model_ref", metavar="MODEL")
@click.argument("inputs", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--max-model-fee", type=click.IntRange(min=0), default=None,
              help="Most royalty you accept to pay the model's owner (default: its current fee per call).")
@tx_options
def infer(model_ref: str, inputs: Path, max_model_fee: int | None, from_key: str, keyring: Path, node_url: str,
          fee: int | None, gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float,
          as_json: bool) -> None:
    """Run MODEL (id or name) on INPUTS (.npy, .npz or .json); wait for finality and print the outputs."""
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        model_id = resolve_model_id(client, model_ref)
        info = client.model(model_id)
        record = ModelRecord.decode(info.raw)
        tensors = load_inputs(inputs, record.meta.inputs)
        ctx = chain_context(client, key, nonce)
        input_bytes = sum(len(t.data) for t in tensors)
        # The model's load is included: the sender cannot know whether its call is the block's first on it.
        extra = int(record.gas_per_call) + int(record.gas_load) + (int(ctx.vm["gas_infer_per_io_byte"]) * input_bytes if ctx.vm else 0)
        gas = ctx.gas("gas_infer_base", gas_limit, extra)
        royalty = int(record.meta.fee_per_call) if max_model_fee is None else max_model_fee
        payload = Infer(Hash32.from_hex(model_id), tensors, Amount(royalty))
        signed = build_tx(key, payload, chain_id=ctx.chain_id, nonce=ctx.nonce, gas_limit=gas,
                          fee=ctx.fee(gas, fee))
        result = submit(client, signed, no_wait=no_wait, timeout=timeout)
        if no_wait:
            echo_pairs([("hash", result.hash.hex()), ("status", "accepted into the mempool")])
            return
        proof = client.inference(result.hash)
        verified = proof.verify(client.validators(proof.height).validator_set())
    if not verified:
        raise CliError(f"the node's proof for {result.hash.hex()} does not verify against the commit")
    outputs = decode_outputs(record, proof.outputs)
    doc = {"hash": result.hash.hex(), "height": proof.height, "model_id": model_id, "model": record.meta.name,
           "status": proof.result.status.name.lower(), "gas_used": int(proof.result.gas_used),
           "proof": "verified: results root and a commit by more than 2/3 of the validators' power",
           "outputs": outputs}
    if as_json:
        echo_json(doc)
        return
    doc.pop("outputs")
    echo_pairs(list(doc.items()))
    for out in outputs:
        click.echo(f"{out['name']} {out['dtype']}{out['shape']}: {out['values']}")

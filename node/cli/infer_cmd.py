"""`inferchain infer MODEL INPUT`: submit an inference, wait for finality, check its proof, print outputs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from core.tensor import Tensor
from core.types import Amount, Hash32
from core.units import AmountText
from node.cli.chainctx import chain_context
from node.cli.common import (
    AMOUNT,
    CliError,
    echo_json,
    echo_pairs,
    emit,
    load_signing_key,
    resolve_amount,
    tx_options,
)
from node.cli.model_cmd import resolve_model_id
from node.cli.tx_cmd import submit
from node.client import Client
from vm.state import ModelRecord
from vm.txs import Infer, TensorSpec, build_tx

_UNNAMED = ""


def load_inputs(path: Path, specs: tuple[TensorSpec, ...], *, cast: bool = False) -> tuple[Tensor, ...]:
    """The model's inputs, in its declared order, from .npy (one input), .npz (one array per input name) or
    JSON ({name: nested list}, or a nested list for a one-input model).

    Matched strictly by name against the registered spec (the names never travel: the transaction carries
    the tensors in declared order): an unknown or missing name is an error, never a guess by position. The
    shape must be the declared one exactly (no reshaping). A .npy/.npz array must have the declared dtype
    unless `cast`, which allows value-preserving casts (integers that fit, integral floats to integers) and
    float narrowing that stays finite. JSON numbers are parsed for the declared dtype: integers for integer
    inputs, numbers for float inputs, true/false only for bool inputs. Every mismatch is a one-line CliError,
    raised before anything is signed."""
    arrays = _read_inputs(path)
    names = [spec.name for spec in specs]
    if set(arrays) == {_UNNAMED}:
        if len(specs) != 1:
            raise CliError(f"{path}: the model takes {len(specs)} inputs ({_names(names)}); give them by name "
                           "in a .npz or a JSON object")
        arrays = {names[0]: arrays[_UNNAMED]}
    unknown = [n for n in arrays if n not in names]
    if unknown:
        raise CliError(f"{path}: unknown input {unknown[0]!r}; the model takes {_names(names)}")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise CliError(f"{path}: missing input {missing[0]!r}; the model takes {_names(names)}")
    return tuple(_tensor(arrays[spec.name], spec, cast) for spec in specs)


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names) or "no inputs"


def _read_inputs(path: Path) -> dict[str, Any]:
    """Arrays (.npy/.npz) or JSON values by input name; `_UNNAMED` for a lone unnamed one."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {_UNNAMED: np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if suffix == ".json":
            doc = json.loads(path.read_bytes(), parse_constant=_no_constant)
            return dict(doc) if isinstance(doc, dict) else {_UNNAMED: doc}
    except (OSError, ValueError, EOFError, RecursionError, zipfile.BadZipFile) as exc:
        raise CliError(f"{path}: cannot read inputs ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    raise CliError(f"{path}: inputs must be .npy, .npz or .json")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _tensor(value: Any, spec: TensorSpec, cast: bool) -> Tensor:
    target = spec.dtype.numpy
    shape = tuple(int(d) for d in spec.shape)
    arr = _from_json(value, spec, target) if not isinstance(value, np.ndarray) else value
    if arr.shape != shape:
        raise CliError(f"input {spec.name!r} has shape {list(arr.shape)}; the model takes {list(shape)}")
    if arr.dtype != target:
        if not cast:
            raise CliError(f"input {spec.name!r} is {arr.dtype.name}; the model takes {target.name} "
                           "(--cast converts when no value changes)")
        arr = _safe_cast(arr, spec.name, target)
    return Tensor.from_numpy(np.ascontiguousarray(arr))


def _safe_cast(arr: np.ndarray, name: str, target: np.dtype[Any]) -> np.ndarray:
    kind, to = arr.dtype.kind, target.kind
    refuse = f"input {name!r}: cannot cast {arr.dtype.name} to {target.name}"
    if kind not in "biuf" or (kind == "b") != (to == "b"):
        raise CliError(f"{refuse} (booleans and numbers do not mix)")
    with np.errstate(all="ignore"):
        out = arr.astype(target)
        if to == "f":
            if not np.array_equal(np.isfinite(out), np.isfinite(arr)):
                raise CliError(f"{refuse}: a value is out of its range")
            if kind in "iu" and not np.array_equal(out.astype(arr.dtype), arr):
                raise CliError(f"{refuse}: an integer has no exact {target.name} value")
        elif kind == "f" and not (np.all(np.isfinite(arr)) and np.array_equal(out.astype(arr.dtype), arr)):
            raise CliError(f"{refuse}: a value is fractional or out of its range")
        elif kind in "iu" and not np.array_equal(out.astype(np.int64 if kind == "i" else np.uint64), arr):
            raise CliError(f"{refuse}: a value is out of its range")
    return out


def _from_json(value: Any, spec: TensorSpec, target: np.dtype[Any]) -> np.ndarray:
    """A nested list of JSON values as an array of the declared dtype; each leaf checked for it."""
    leaves: list[Any] = []
    shape = _json_shape(value, spec.name, leaves)
    kind = target.kind
    for leaf in leaves:
        if isinstance(leaf, bool):
            if kind != "b":
                raise CliError(f"input {spec.name!r} holds a boolean; the model takes {target.name}")
        elif isinstance(leaf, int | float):
            if kind == "b":
                raise CliError(f"input {spec.name!r} holds a number; the model takes bool (true/false)")
            if kind in "iu":
                if not isinstance(leaf, int):
                    raise CliError(f"input {spec.name!r} holds {leaf!r}; the model takes {target.name} integers")
                info = np.iinfo(target)
                if not info.min <= leaf <= info.max:
                    raise CliError(f"input {spec.name!r} holds {leaf}, outside {target.name}")
        else:
            what = "a string" if isinstance(leaf, str) else "null" if leaf is None else type(leaf).__name__
            raise CliError(f"input {spec.name!r} holds {what}; the model takes {target.name}")
    if kind != "f":
        return np.array(leaves, dtype=target).reshape(shape)
    try:
        exact = [float(v) for v in leaves]
    except OverflowError:
        raise CliError(f"input {spec.name!r} holds a number outside {target.name}") from None
    with np.errstate(all="ignore"):
        arr = np.array(exact, dtype=target)
    if not np.all(np.isfinite(arr)):
        raise CliError(f"input {spec.name!r} holds a number outside {target.name}")
    for leaf, got in zip(leaves, arr.tolist(), strict=True):
        if isinstance(leaf, int) and int(got) != leaf:
            raise CliError(f"input {spec.name!r} holds {leaf}, which {target.name} cannot hold exactly")
    return arr.reshape(shape)


def _json_shape(value: Any, name: str, leaves: list[Any], depth: int = 0) -> tuple[int, ...]:
    if not isinstance(value, list):
        if isinstance(value, dict):
            raise CliError(f"input {name!r} holds an object; give a number or a nested list")
        leaves.append(value)
        return ()
    if depth >= 32:
        raise CliError(f"input {name!r} is nested too deeply")
    shapes = {_json_shape(v, name, leaves, depth + 1) for v in value}
    if len(shapes) > 1:
        raise CliError(f"input {name!r} is ragged: its lists have different shapes")
    return (len(value), *(shapes.pop() if shapes else ()))


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
@click.option("--max-model-fee", type=AMOUNT, default=None,
              help="Most royalty you accept to pay the model's owner, e.g. 0.5ifc (default: its current fee per call).")
@click.option("--cast", is_flag=True,
              help="Convert inputs of another dtype when no value changes (float narrowing may round).")
@tx_options
def infer(model_ref: str, inputs: Path, max_model_fee: AmountText | None, cast: bool, from_key: str,
          keyring: Path, node_url: str, fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float,
          as_json: bool) -> None:
    """Run MODEL (id or name) on INPUTS (.npy, .npz or .json; matched to the model's inputs by name, with
    the declared dtype and shape); wait for finality and print the outputs."""
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        model_id = resolve_model_id(client, model_ref)
        info = client.model(model_id)
        record = ModelRecord.decode(info.raw)
        tensors = load_inputs(inputs, record.meta.inputs, cast=cast)
        ctx = chain_context(client, key, nonce)
        input_bytes = sum(len(t.data) for t in tensors)
        # The model's load is included: the sender cannot know whether its call is the block's first on it.
        extra = int(record.gas_per_call) + int(record.gas_load) + (int(ctx.vm["gas_infer_per_io_byte"]) * input_bytes if ctx.vm else 0)
        gas = ctx.gas("gas_infer_base", gas_limit, extra)
        royalty = (int(record.meta.fee_per_call) if max_model_fee is None
                   else resolve_amount(max_model_fee, ctx.token, "--max-model-fee"))
        payload = Infer(Hash32.from_hex(model_id), tensors, Amount(royalty))
        signed = build_tx(key, payload, chain_id=ctx.chain_id, nonce=ctx.nonce, gas_limit=gas,
                          fee=ctx.fee(gas, None if fee is None else resolve_amount(fee, ctx.token, "--fee")))
        result = submit(client, signed, no_wait=no_wait, timeout=timeout)
        if no_wait:
            emit({"hash": result.hash.hex(), "status": "accepted into the mempool"}, as_json)
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

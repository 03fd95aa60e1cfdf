"""`inferchain model register|list|show`: canonicalize a model locally, upload it in chunks, read models.

Registration follows docs/design.md §2.1: the client rewrites the model into canonical form, runs it with the
pinned session options to compute golden outputs (float outputs on the declared grid), and uploads the bytes
as chunk transactions; the chain only checks and hashes what it receives.
"""

from __future__ import annotations

import json
import math
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from core.errors import DecodeError, InvalidModel, LocalFault
from core.tensor import DType, Tensor
from core.types import Address, Amount
from core.units import format_amount
from node.cli.chainctx import chain_context
from node.cli.common import (
    CliError,
    default_genesis,
    echo_json,
    echo_pairs,
    json_option,
    load_signing_key,
    node_option,
    tx_options,
)
from node.cli.units import chain_token
from node.client import Client, ModelInfo, NodeUnreachable, RpcError
from node.rpc.errors import METHOD_NOT_FOUND, NOT_FOUND, TIMEOUT
from vm.txs import (
    GoldenVector,
    ModelChunk,
    ModelClass,
    ModelMeta,
    TensorSpec,
    sign_upload,
    split_model,
)

if TYPE_CHECKING:
    from vm.apply import RegisterResolution
    from vm.sandbox.limits import GasSchedule

UPLOAD_BATCH = 3  # chunk transactions per broadcast_txs call (each is up to ~256 KiB, hex-doubled on the wire)
# Chunks sent ahead of the account's committed nonce: every UPLOAD_WINDOW chunks the upload waits for its batch
# to commit, staying under the mempool's nonce gap (node config mempool.max_nonce_gap, 64 by default): a
# model over 64 chunks (~16 MB) sent at once had its later chunks refused after the earlier ones were paid.
UPLOAD_WINDOW = 16 * UPLOAD_BATCH


@click.group()
def model() -> None:
    """Register models and read the registry."""


def _parse_shapes(items: tuple[str, ...]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError:
            raise CliError(f"--input-shape {item!r}: expected NAME=D1,D2,... (e.g. x=1,64)") from None
    return shapes


def _declared_shapes(model_bytes: bytes) -> dict[str, list[int]]:
    from vm.sandbox.graph import parse_model
    from vm.sandbox.limits import DEFAULT_LIMITS

    proto = parse_model(model_bytes, DEFAULT_LIMITS)  # InvalidModel (one line) for anything malformed
    initializers = {i.name for i in proto.graph.initializer}
    shapes: dict[str, list[int]] = {}
    for inp in proto.graph.input:
        if inp.name in initializers:
            continue
        dims = inp.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            raise CliError(f"input {inp.name!r} has a dynamic shape; pin it with --input-shape {inp.name}=D1,D2,...")
        shapes[inp.name] = [d.dim_value for d in dims]
    return shapes


def keep_outputs(model_bytes: bytes, names: tuple[str, ...]) -> bytes:
    """The model with only the named graph outputs (canonicalization then drops the nodes only the others
    needed): a float classifier exported with its label registers its probabilities alone. Runs before the
    conversion, which refuses string graph outputs at once: a dropped one no longer matters."""
    if not names:
        return model_bytes
    from google.protobuf.message import DecodeError as ProtobufDecodeError
    from onnx import ModelProto

    proto = ModelProto()
    try:
        proto.ParseFromString(model_bytes)
    except (ProtobufDecodeError, RuntimeError, ValueError):
        raise InvalidModel("not an ONNX model: its bytes do not parse") from None
    have = [o.name for o in proto.graph.output]
    unknown = [n for n in names if n not in have]
    if unknown:
        raise CliError(f"--output {unknown[0]!r}: the model's outputs are {', '.join(map(repr, have))}")
    keep = [o for o in proto.graph.output if o.name in names]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    return proto.SerializeToString()


def _output_names(model_bytes: bytes) -> list[str]:
    from vm.sandbox.graph import parse_model
    from vm.sandbox.limits import DEFAULT_LIMITS

    return [o.name for o in parse_model(model_bytes, DEFAULT_LIMITS).graph.output]


def _specs(nodes: list[Any]) -> tuple[TensorSpec, ...]:
    out = []
    for n in nodes:
        np_name = n.type.removeprefix("tensor(").removesuffix(")")
        np_name = {"float": "float32", "double": "float64", "float16": "float16"}.get(np_name, np_name)
        try:
            out.append(TensorSpec(n.name, DType.from_name(np_name), tuple(int(d) for d in n.shape)))
        except (TypeError, ValueError) as exc:
            raise InvalidModel(f"model tensor {n.name!r} ({n.type}) cannot be registered: {exc}") from None
    return tuple(out)


def _golden_inputs(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    dt = spec.dtype.numpy
    shape = tuple(spec.shape)
    if spec.dtype.is_float:
        return rng.random(shape).astype(dt)
    if spec.dtype == DType.BOOL:
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dt)  # type: ignore[type-var]
    return rng.integers(max(info.min, -128), min(info.max, 255) + 1, shape).astype(dt)


def prepare_model(model_bytes: bytes, *, name: str, model_class: str, grid_k: int, tol_abs: int, tol_rel_ppm: int,
                  fee_per_call: int, input_shapes: dict[str, list[int]], golden_inputs: list[dict[str, np.ndarray]],
                  on_canonical: Callable[[bytes], None] | None = None) -> tuple[bytes, ModelMeta]:
    """Canonical bytes and registration metadata, with golden outputs computed by the pinned runtime.
    `on_canonical` sees the canonical bytes before the graph check and the golden runs (and may refuse)."""
    from node.modelprep import check_graph
    from vm.sandbox.canonicalize import canonicalize
    from vm.sandbox.graph import one_line
    from vm.sandbox.numeric import quantize
    from vm.sandbox.session import create_session

    shapes = input_shapes or _declared_shapes(model_bytes)
    canonical = canonicalize(model_bytes, shapes)
    if on_canonical is not None:
        on_canonical(canonical)
    check_graph(canonical, model_class, grid_k, tol_abs, tol_rel_ppm)  # the chain's refusals, before any run
    try:
        session = create_session(canonical)
    except LocalFault:
        raise
    except Exception as exc:  # ORT's refusals have no common base class; the user gets one line
        raise InvalidModel(f"the runtime refuses the canonical model: {one_line(exc)}") from None
    inputs = _specs(session.get_inputs())
    outputs = _specs(session.get_outputs())
    cases = golden_inputs or [
        {s.name: _golden_inputs(s, np.random.default_rng(seed)) for s in inputs} for seed in (1, 2)]
    vectors = []
    for case in cases:
        feed = {}
        for s in inputs:
            if s.name not in case:
                raise CliError(f"golden inputs lack the input {s.name!r}")
            arr = np.asarray(case[s.name])
            if tuple(arr.shape) != tuple(s.shape):
                raise CliError(f"golden input {s.name!r} has shape {arr.shape}, the model takes {tuple(s.shape)}")
            try:
                feed[s.name] = arr.astype(s.dtype.numpy)
            except (TypeError, ValueError):
                raise CliError(f"golden input {s.name!r} ({arr.dtype}) cannot be cast to {s.dtype.numpy}") from None
        try:
            raw = session.run([o.name for o in outputs], feed)
        except Exception as exc:  # the chain would refuse a model whose golden inputs do not run
            raise InvalidModel(f"the model fails on its golden inputs: {one_line(exc)}") from None
        outs = []
        for spec, value in zip(outputs, raw, strict=True):
            arr = np.asarray(value)
            outs.append(Tensor.from_numpy(quantize(arr, grid_k, spec.name) if spec.dtype.is_float else arr))
        vectors.append(GoldenVector(tuple(Tensor.from_numpy(feed[s.name]) for s in inputs), tuple(outs)))
    cls = ModelClass.EXACT if model_class == "exact" else ModelClass.TOLERANT
    meta = ModelMeta(name, inputs, outputs, cls, grid_k, tol_abs, tol_rel_ppm, Amount(fee_per_call), tuple(vectors))
    # The chain's own decoding rules (the metadata cap among them), before anything is signed: DecodeError
    # is one line on the command line.
    try:
        return canonical, ModelMeta.decode(meta.encode())
    except (ValueError, DecodeError) as exc:  # encode's length caps, decode's (the metadata cap)
        raise InvalidModel(f"the registration metadata is over the chain's caps: {one_line(exc)}") from None


@model.command("register")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--name", required=True, help="Model name (at most 64 bytes).")
@click.option("--class", "model_class", type=click.Choice(["exact", "tolerant"]), required=True,
              help="exact: integer activations, compared bit for bit; tolerant: float, within tolerance.")
@click.option("--grid-k", type=click.IntRange(0, 40), default=20, show_default=True,
              help="Float outputs are committed as round(y * 2^k).")
@click.option("--tol-abs", type=click.IntRange(min=0), default=32, show_default=True, help="Tolerance in grid units.")
@click.option("--tol-rel-ppm", type=click.IntRange(min=0), default=200, show_default=True,
              help="Relative tolerance in parts per million.")
@click.option("--fee-per-call", type=click.IntRange(min=0), default=0, show_default=True,
              help="Royalty paid to you per inference.")
@click.option("--input-shape", multiple=True, metavar="NAME=D1,D2", help="Pin a dynamic input shape; repeatable.")
@click.option("--golden-inputs", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help=".npz of golden inputs by input name (default: two seeded random inputs).")
@click.option("--output", "outputs", multiple=True, metavar="NAME",
              help="Register only this graph output (repeatable), e.g. a classifier's probabilities without its "
                   "label; the default is every output.")
@click.option("--dry-run", is_flag=True,
              help="Convert, canonicalize and run the chain's registration check here; print the price, send nothing.")
@tx_options
def register(path: Path, name: str, model_class: str, grid_k: int, tol_abs: int, tol_rel_ppm: int,
             fee_per_call: int, input_shape: tuple[str, ...], golden_inputs: Path | None, outputs: tuple[str, ...],
             dry_run: bool, from_key: str, keyring: Path, node_url: str, fee: object, gas_limit: int | None, nonce: int | None,
             no_wait: bool, timeout: float, as_json: bool) -> None:
    """Convert and canonicalize the ONNX model at PATH, check it as the chain will, upload it in chunks and
    wait for its registration."""
    if fee is not None:
        raise CliError("--fee does not apply to uploads: each chunk pays its gas limit x the minimum gas price")
    golden: list[dict[str, np.ndarray]] = []
    if golden_inputs is not None:
        try:
            with np.load(golden_inputs, allow_pickle=False) as data:
                golden = [{k: data[k] for k in data.files}]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
            raise CliError(f"--golden-inputs {golden_inputs}: not a .npz of arrays ({type(exc).__name__})") from None
    if model_class == "exact":
        grid_k, tol_abs, tol_rel_ppm = 0, 0, 0
    from node.modelprep import upgrade  # onnx: only the commands that prepare a model load it

    upgraded = upgrade(keep_outputs(path.read_bytes(), outputs))
    for change in upgraded.changes:
        click.echo(f"converted: {change}", err=True)
    vm, source, reached = published_vm(node_url)

    def refuse_early(canonical: bytes) -> None:  # before the check and the golden runs
        if gas_limit is None and (reached or dry_run):
            over_tx_gas(vm, registration_floor(vm, canonical), at_least=True)
            over_first_call_floor(vm, canonical)
        if reached and vm is not None and "gas_register_per_byte" in vm and _is_deferred_floor(vm, canonical):
            with Client(node_url, timeout=10) as client:  # resident by its size alone: its bound, before the runs
                over_resident_bound(client, len(canonical))

    try:
        canonical, meta = prepare_model(upgraded.model_bytes, name=name, model_class=model_class, grid_k=grid_k,
                                        tol_abs=tol_abs, tol_rel_ppm=tol_rel_ppm, fee_per_call=fee_per_call,
                                        input_shapes=_parse_shapes(input_shape), golden_inputs=golden,
                                        on_canonical=refuse_early)
    except InvalidModel as exc:
        if "reads the label of" not in str(exc):
            raise
        names = _output_names(upgraded.model_bytes)
        hint = " ".join(f"--output {n}" for n in names if "label" not in n.lower()) or "--output NAME"
        raise CliError(f"{exc}; register the other outputs alone with {hint} "
                       f"(this model's outputs: {', '.join(map(repr, names))})") from None
    chunks = split_model(canonical, meta)  # the one hash of the whole model: the id, the precheck and the upload
    model_id = chunks[0].model_id
    if dry_run:
        _dry_run(canonical, meta, chunks, node_url, (vm, source, reached), upgraded.changes, as_json)
        return
    key = load_signing_key(from_key, keyring)
    with Client(node_url, timeout=60) as client:
        ensure_name_free(client, name)
        ctx = chain_context(client, key, nonce)
        limits = []
        quote = None
        for i, chunk in enumerate(chunks):
            extra = int(ctx.vm["gas_chunk_per_byte"]) * len(chunk.data) if ctx.vm else 0
            if i == len(chunks) - 1 and ctx.vm:
                quote = _gas_quote(ctx.vm, canonical, meta)
                extra += quote.registration
            limits.append(ctx.gas("gas_chunk_base", gas_limit, extra))
        over_tx_gas(ctx.vm, limits[-1] if gas_limit is None else 0)  # before the (slower) full pre-check
        if quote is not None and gas_limit is None:
            uncallable(ctx.vm, quote)
        if quote is not None and quote.deferred_check:
            over_resident_bound(client, len(canonical))
        _refuse_as_the_chain_would(client, canonical, meta, chunks, ctx.vm, key.address)
        if quote is not None and quote.deferred_check:
            _can_pay_deferred(client, key.address, sum(limits) * ctx.gas_price(), quote.deferred_check * ctx.gas_price(),
                              resident_deposit(ctx.vm, len(canonical)))
        txs = sign_upload(key, chunks, chain_id=ctx.chain_id, first_nonce=ctx.nonce, gas_limits=limits,
                          gas_price=ctx.gas_price())
        last = None
        with click.progressbar(length=len(canonical), label=f"uploading {len(chunks)} chunk(s)",
                               file=sys.stderr) as bar:
            for start in range(0, len(txs), UPLOAD_BATCH):
                batch = txs[start:start + UPLOAD_BATCH]
                final = start + UPLOAD_BATCH >= len(txs)
                window_end = (start + UPLOAD_BATCH) % UPLOAD_WINDOW == 0
                mode = "commit" if (final and not no_wait) or (window_end and not final) else "sync"
                results = client.broadcast_txs(batch, mode=mode, timeout=timeout)
                for r in results:
                    if not r.accepted:
                        raise CliError(f"chunk transaction {r.hash.hex()[:16]} refused: {r.error}")
                    if r.result is not None and not r.result.ok:
                        raise CliError(f"registration failed in block {r.height}: {r.result.status}"
                                       + (f": {r.result.log}" if r.result.log else ""))
                bar.update(sum(len(c.data) for c in chunks[start:start + UPLOAD_BATCH]))
                last = results[-1]
        status = "registered" if last and last.height is not None else "uploaded (not waited for)"
        activated = None
        if last is not None and last.result is not None and quote is not None and quote.deferred_check:
            activated = _wait_for_activation(client, model_id, last.result.data, timeout)
            status = "registered"
    doc = {"model_id": model_id.hex(), "name": name, "class": model_class, "bytes": len(canonical),
           "chunks": len(chunks), "last_tx": last.hash.hex() if last else None,
           "height": last.height if last else None, "status": status}
    if activated is not None:
        doc["activated_at"] = activated
    if as_json:
        echo_json(doc)
    else:
        echo_pairs(list(doc.items()))


def _can_pay_deferred(client: Client, sender: Address, fees: int, check_price: int, deposit: int = 0) -> None:
    """CliError before anything is signed when the sender cannot pay the chunks' fees and a deferred
    registration's check (paid in tokens by the completing chunk) and lock its resident deposit: the chain
    would fail that chunk after the others were paid for."""
    balance = client.account(sender).balance
    if balance < fees + check_price + deposit:
        raise CliError(f"this registration is deferred (its check is paid in tokens, {check_price}, besides the "
                       f"chunks' fees, {fees}, and it locks a resident deposit of {deposit}, refunded when it is "
                       f"retired): the balance {balance} cannot pay all three")


def resident_deposit(vm: dict[str, Any] | None, model_bytes: int) -> int:
    """The deposit a resident (deferred) registration locks, from the node's parameters (vm/retire.py)."""
    from vm.retire import compute_deposit

    return compute_deposit(int(vm.get("resident_deposit_per_kib", 0)), model_bytes) if vm else 0


def _wait_for_activation(client: Client, model_id: bytes, data: bytes, timeout: float) -> int:
    """A deferred registration (docs/sandbox.md, "Deferred activation"): its completing chunk's result names
    the activation height; `wait_for_activation` follows it."""
    if len(data) != 8:
        raise CliError("the completing chunk's result does not name an activation height")
    return wait_for_activation(client, model_id, timeout)


def pending_line(doc: dict[str, Any], now: int) -> str:
    """A pending deferred registration (the `model_registration` RPC's answer) in one line."""
    postponed = int(doc.get("postponed", 0))
    again = f" (postponed {postponed} of {doc.get('max_postponements', '?')})" if postponed else ""
    return f"pending{again}, activates at height {doc['activates_at']} (now {now})"


def wait_for_activation(client: Client, model_id: bytes, timeout: float, *, per_block_s: float = 5.0,
                        echo: Callable[[str], None] = lambda line: click.echo(line, err=True)) -> int:
    """Wait until a deferred registration is decided and return the height it registered at; CliError with
    the chain's reason if it rejected the model. While the entry is pending its activation height is read
    again after each wait: a proposer that could not check it postpones it to the queue's tail (at most
    `max_postponements` times), which is echoed and followed. The wait is bounded: `timeout` plus
    `per_block_s` per block to the activation height, measured again from each postponement."""
    doc = client.model_registration(model_id)
    now = client.status().height
    seen = int(doc.get("postponed", 0))
    started = time.monotonic()
    deadline = started + timeout + per_block_s * max(0, int(doc.get("activates_at", now)) - now)
    if doc.get("status") == "pending":
        echo(pending_line(doc, now))
    while doc.get("status") == "pending":
        activates_at, postponed = int(doc["activates_at"]), int(doc.get("postponed", 0))
        if postponed != seen:
            seen = postponed
            echo(f"postponed ({postponed} of {doc.get('max_postponements', '?')}), activates at height "
                 f"{activates_at}")
            deadline = max(deadline, time.monotonic() + timeout + per_block_s * max(0, activates_at - now))
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise RpcError(TIMEOUT, "no time left")
            now = client.wait_for_height(activates_at, timeout=left).height
        except RpcError as err:
            if err.code != TIMEOUT:
                raise
            raise CliError(f"gave up after {time.monotonic() - started:.0f} s: model {model_id.hex()} is still "
                           f"pending at height {client.status().height} (activates at height {activates_at}, "
                           f"postponed {postponed} times); follow it with `inferchain model status "
                           f"{model_id.hex()}`") from None
        doc = client.model_registration(model_id)
    if doc.get("status") == "rejected":
        raise CliError(f"the chain rejected model {model_id.hex()} at height {doc.get('activates_at')}: "
                       f"{doc.get('log', '')}")
    if doc.get("status") != "registered":
        raise CliError(f"model {model_id.hex()}: unexpected registration status {doc.get('status')!r}")
    return int(doc.get("registered_at", doc.get("activates_at", now)))


def _registered(client: Client, model_id: bytes) -> bool:
    try:
        client.model(model_id)
    except RpcError as err:
        if err.code == NOT_FOUND:
            return False
        raise
    return True


def _refuse_as_the_chain_would(client: Client | None, canonical: bytes, meta: ModelMeta, chunks: list[ModelChunk],
                               vm: dict[str, Any] | None, owner: Address) -> RegisterResolution:
    """The chain's registration verdict computed here (node.modelprep.precheck); CliError if it refuses."""
    from node.modelprep import limits_from_vm_params, precheck, refusal

    model_id = chunks[0].model_id
    if client is not None and _registered(client, model_id):
        raise CliError(f"model {model_id.hex()} is already registered")
    resolution = precheck(canonical, meta, limits_from_vm_params(vm), owner, chunks)
    why = refusal(resolution)
    if why is not None:
        raise CliError(f"the chain would refuse this registration: {why}")
    return resolution


def _dry_run(canonical: bytes, meta: ModelMeta, chunks: list[ModelChunk], node_url: str,
             published: tuple[dict[str, Any] | None, str, bool], changes: tuple[str, ...], as_json: bool) -> None:
    """What `register` would send and pay, from the node's parameters (the repository's genesis when the
    node cannot be reached); nothing is signed or sent."""
    vm, source, reached = published
    gas = deferred_check = first_call = load = 0
    if vm:
        gas = sum(int(vm["gas_chunk_base"]) + int(vm["gas_chunk_per_byte"]) * len(c.data) for c in chunks)
        last_chunk = int(vm["gas_chunk_base"]) + int(vm["gas_chunk_per_byte"]) * len(chunks[-1].data)
        quote = _gas_quote(vm, canonical, meta)
        registration, deferred_check, first_call, load = (quote.registration, quote.deferred_check, quote.first_call,
                                                          quote.load)
        over_tx_gas(vm, last_chunk + registration)  # before the (slower) full pre-check
        uncallable(vm, quote)
        gas += registration
    budget: dict[str, Any] | None = None
    if reached:
        with Client(node_url, timeout=10) as client:
            if deferred_check:
                budget = over_resident_bound(client, len(canonical))
            resolution = _refuse_as_the_chain_would(client, canonical, meta, chunks, vm, Address(bytes(20)))
    else:
        resolution = _refuse_as_the_chain_would(None, canonical, meta, chunks, vm, Address(bytes(20)))
    price = int(vm["min_gas_price"]) if vm else 1
    doc = {"model_id": chunks[0].model_id.hex(), "name": meta.name, "class": meta.model_class.name.lower(),
           "bytes": len(canonical), "chunks": len(chunks), "converted": "; ".join(changes) or "nothing",
           "gas_per_call": resolution.gas_per_call, "gas_load": load if deferred_check else resolution.gas_load, "upload_gas": gas,
           "upload_fee": gas * price + deferred_check * price, "deferred_check_gas": deferred_check,
           # A deferred registration is resident (vm/resident.py): its load is in the tokens above, and an
           # inference's first use in a block pays no per-KiB load (`first_call_gas`).
           "resident": deferred_check > 0, "first_call_gas": first_call,
           # ... and locks a deposit per KiB, refunded when it is retired (vm/retire.py).
           "resident_deposit": resident_deposit(vm, len(canonical)) if deferred_check else 0}
    if deferred_check and vm:
        doc.update(activation_quote(vm, budget))
    doc.update(params_from=source, status="would register (dry run: nothing sent)")
    if as_json:
        echo_json(doc)
    else:
        echo_pairs(list(doc.items()))


def over_resident_bound(client: Client, size: int) -> dict[str, Any] | None:
    """CliError, before anything is signed, when a resident model (a deferred registration, vm/resident.py) of
    `size` canonical bytes does not fit the chain's resident bound (`vm.max_resident_bytes` or the count,
    pending activations included): the chain refuses only its completing chunk, after every chunk fee was
    paid. The node applies the chain's own rule (RPC `resident_models`); the budget it read, or None from a
    node that does not answer the method."""
    try:
        doc: dict[str, Any] = client.call("resident_models", {"size": size})
    except RpcError as err:
        if err.code == METHOD_NOT_FOUND:  # an older node: the chain still refuses the completing chunk
            return None
        raise
    if not doc.get("fits", True):
        raise CliError(f"this model would be resident and does not fit the chain's resident bound "
                       f"(vm.max_resident_bytes {doc['max_bytes']}, at most {doc['max_models']} models): "
                       f"{doc['held_bytes']} bytes held by {doc['count']} resident models, pending ones "
                       f"included, and this model is {size} bytes ({doc['refusal']}); the chain would refuse its "
                       "last chunk after every chunk fee was paid")
    return doc


def activation_quote(vm: dict[str, Any], budget: dict[str, Any] | None) -> dict[str, Any]:
    """What a deferred (resident) registration's `--dry-run` adds: how its activation may be postponed
    (`vm.max_postponements`), and the resident budget the node reported (None: not reached)."""
    bound = int(vm.get("max_postponements", 0))
    doc: dict[str, Any] = {
        "max_postponements": bound,
        "activation": (f"queued after its last chunk; a proposer that cannot run its check may postpone it to the "
                       f"queue's tail up to {bound} times (vm.max_postponements), after which it is rejected as "
                       "unchecked; its fees and check tokens are not refunded either way")}
    if budget is not None:
        doc.update(resident_bytes_held=budget["held_bytes"], max_resident_bytes=budget["max_bytes"])
    return doc


def _model_doc(m: ModelInfo) -> dict[str, Any]:
    return {"model_id": m.model_id.hex(), "name": m.name, "class": m.model_class, "owner": m.owner,
            "fee_per_call": m.fee_per_call, "gas_per_call": m.gas_per_call, "registered_at": m.registered_at,
            "bytes": m.total_bytes, "inputs": list(m.inputs), "outputs": m.fields.get("outputs", [])}


@model.command("list")
@node_option
@json_option
def list_models(node_url: str, as_json: bool) -> None:
    """Every registered model."""
    with Client(node_url) as client:
        models = client.models()
    if as_json:
        echo_json([_model_doc(m) for m in models])
        return
    if not models:
        click.echo("no models registered")
    for m in models:
        click.echo(f"{m.model_id.hex()}  {m.name:<20} {m.model_class:<8} gas/call={m.gas_per_call}  "
                   f"registered at {m.registered_at}")


@model.command("show")
@click.argument("model_id")
@node_option
@json_option
def show(model_id: str, node_url: str, as_json: bool) -> None:
    """One model's metadata: class, inputs, outputs, price, owner."""
    with Client(node_url) as client:
        m = client.model(resolve_model_id(client, model_id))
        token = chain_token(client)
    doc = _model_doc(m)
    if as_json:
        echo_json(doc)
        return
    ins = doc.pop("inputs")
    outs = doc.pop("outputs")
    doc["fee_per_call"] = format_amount(int(doc["fee_per_call"]), token)
    echo_pairs([(k.replace("_", " "), v) for k, v in doc.items()])
    for s in ins:
        click.echo(f"input  {s['name']}: {s['dtype']} {s['shape']}")
    for s in outs:
        click.echo(f"output {s['name']}: {s['dtype']} {s['shape']}")


@model.command("status")
@click.argument("model_id")
@node_option
@json_option
def registration_status(model_id: str, node_url: str, as_json: bool) -> None:
    """Where a model's registration stands: registered, or (a deferred registration) pending with the height
    it activates at, or rejected with the chain's reason."""
    with Client(node_url) as client:
        doc = client.model_registration(resolve_model_id(client, model_id))
        height = client.status().height
    if as_json:
        echo_json({**doc, "height": height})
        return
    if doc["status"] == "pending":
        click.echo(pending_line(doc, height))
    elif doc["status"] == "rejected":
        click.echo(f"rejected at height {doc['activates_at']}: {doc.get('log', '')}")
    elif doc["status"] == "retired":
        by = "governance" if doc.get("by_governance") else "its owner"
        click.echo(f"retired at height {doc.get('retired_at')} by {by}")
    else:
        click.echo(f"registered at height {doc.get('registered_at')}")


def ensure_name_free(client: Client, name: str) -> None:
    """Names are first come per chain, held from an upload's first chunk through a deferred registration's
    wait (the VM refuses a held one at the first chunk); refusing it here costs the user no fee at all."""
    holder = client.model_name(name)
    if holder is None:
        return
    short = f"model {str(holder['model_id'])[:16]}…"
    if holder["status"] == "registered":
        owner = client.model(str(holder["model_id"])).owner
        raise CliError(f"the model name {name!r} is taken ({short}, owner {owner}); names are first come per "
                       "chain: choose another --name")
    if holder["status"] == "pending":
        raise CliError(f"the model name {name!r} is held by a pending registration ({short}, activates at height "
                       f"{holder.get('activates_at')}); it is freed only if that one is rejected: choose another "
                       f"--name, or follow it with `inferchain model status {holder['model_id']}`")
    raise CliError(f"the model name {name!r} is held by an upload in progress ({short}); it is freed only if "
                   "that upload expires: choose another --name")


def resolve_model_id(client: Client, text: str) -> str:
    """A model id (64 hex digits) or the name of a registered model."""
    clean = text.strip().removeprefix("0x").lower()
    if len(clean) == 64 and all(c in "0123456789abcdef" for c in clean):
        return clean
    matches = [m for m in client.models() if m.name == text]
    if len(matches) == 1:
        return matches[0].model_id.hex()
    if not matches:
        raise CliError(f"no registered model named {text!r} (give its id, or see `inferchain model list`)")
    raise CliError(f"{len(matches)} models are named {text!r}; give the model id")


def published_vm(node_url: str) -> tuple[dict[str, Any] | None, str, bool]:
    """The node's VM parameters, else the repository's genesis's: (parameters, where from, node reached)."""
    try:
        with Client(node_url, timeout=10) as client:
            return client.call("params").get("vm"), "node", True
    except (NodeUnreachable, RpcError):
        return json.loads(default_genesis().read_text()).get("vm"), "genesis.json (node unreachable)", False


def registration_floor(vm: dict[str, Any] | None, canonical: bytes) -> int:
    """A lower bound of the last chunk's gas from the canonical size alone (the chunk's base, the check's base
    and per-byte terms): it refuses a model far over the cap before its check and golden runs are computed."""
    if vm is None or "gas_register_per_byte" not in vm:
        return 0
    check = int(vm["gas_register_base"]) + int(vm["gas_register_per_byte"]) * len(canonical)
    if check > int(vm.get("defer_check_gas_over", check)):  # deferred: the check is paid in tokens
        return int(vm["gas_chunk_base"]) + int(vm["gas_register_deferred"])
    return int(vm["gas_chunk_base"]) + check


def _is_deferred_floor(vm: dict[str, Any], canonical: bytes) -> bool:
    """Whether the check's base and per-byte terms alone put the registration over the deferral threshold (so
    the model is resident: vm/resident.py)."""
    check = int(vm["gas_register_base"]) + int(vm["gas_register_per_byte"]) * len(canonical)
    return check > int(vm.get("defer_check_gas_over", check))


def over_first_call_floor(vm: dict[str, Any] | None, canonical: bytes) -> None:
    """CliError from the canonical size alone when an inference that is the model's first use in its block
    needs more gas than one transaction may carry: its cold load's per-KiB term (`vm.sandbox.limits.load_gas`)
    is over `vm.max_tx_gas` (the `uncallable` rule, before the check and the golden runs). A registration too
    big for one transaction is deferred (vm/deferred.py) and so resident (vm/resident.py): its blocks pay no
    per-KiB load, so this floor does not apply to it."""
    from vm.sandbox.limits import load_gas

    if vm is None or "max_tx_gas" not in vm:
        return
    if "gas_register_per_byte" in vm and _is_deferred_floor(vm, canonical):
        return  # a resident model (vm/resident.py): its cold load is paid at registration, in tokens
    # The load of a graph with no nodes and no golden runs: its base and per-KiB terms, the one formula.
    floor = int(vm.get("gas_infer_base", 0)) + load_gas(_gas_schedule(vm), model_bytes=len(canonical), nodes=0,
                                                         golden_runs=0, gas_per_call=0)
    cap = int(vm["max_tx_gas"])
    if floor > cap:
        raise CliError(f"an inference on this model needs at least {floor} gas when it is the first use in its "
                       f"block (the model's cold load), over the chain's per-transaction maximum {cap} "
                       "(vm.max_tx_gas): no inference on it could be included, so it is not registered")


def over_tx_gas(vm: dict[str, Any] | None, last_chunk_gas: int, *, at_least: bool = False) -> None:
    """CliError, before anything is signed, when the last chunk (which pays for the registration's check and
    the model's load) needs more gas than one transaction may carry: the chain would refuse that chunk after
    the others were paid for. `at_least`: `last_chunk_gas` is a lower bound (`registration_floor`)."""
    if vm is None or "max_tx_gas" not in vm:
        return
    cap = int(vm["max_tx_gas"])
    if last_chunk_gas > cap:
        raise CliError(f"this model's registration needs {'at least ' if at_least else ''}{last_chunk_gas} gas in "
                       f"its last chunk, over the chain's per-transaction maximum {cap} (vm.max_tx_gas): this "
                       "chain cannot register it")


def _gas_schedule(vm: dict[str, Any]) -> GasSchedule:
    """The sandbox gas schedule from the node's published VM params (genesis form or the RPC's list of
    name/value pairs); prices it does not name keep their defaults."""
    from vm.sandbox.limits import GasSchedule

    named = vm.get("gas_schedule") or {}
    if isinstance(named, list):  # the RPC's form: [{"name": ..., "value": ...}]
        named = {item["name"]: item["value"] for item in named}
    return GasSchedule(**{k: int(v) for k, v in named.items() if k in GasSchedule.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class GasQuote:
    registration: int  # the last chunk's registration gas (vm.execute.completing_gas)
    first_call: int  # an inference's gas when it is the model's first use in its block (vm.execute.infer_gas)
    # A deferred registration's check and resident load gas, paid in tokens (vm.execute.deferred_check_price).
    deferred_check: int = 0
    load: int = 0  # what the model's record will charge a block's first use (vm.state.ModelRecord.gas_load)


def _gas_quote(vm: dict[str, Any], canonical: bytes, meta: ModelMeta) -> GasQuote:
    """The last chunk's registration gas (vm.execute.registration_gas) from the node's published VM params:
    the check (`vm.execute.check_gas`) and its golden runs on the check's session
    (`vm.sandbox.limits.registration_load_gas`), metered here; and what an inference on the model costs when
    it is the first use in its block (`vm.execute.infer_gas`: base, input bytes, the metered call, the cold
    load `vm.sandbox.limits.load_gas`)."""
    from vm.execute import check_gas
    from vm.sandbox.limits import SandboxLimits, load_gas, registration_load_gas, resident_load_gas
    from vm.sandbox.meter import meter

    schedule = _gas_schedule(vm)
    report = meter(canonical, limits=SandboxLimits(gas=schedule))
    nodes, golden_runs = len(report.nodes), len(meta.golden)
    check = check_gas(int(vm["gas_register_base"]), int(vm["gas_register_per_byte"]),
                      int(vm.get("gas_register_per_node", 0)), int(vm.get("gas_register_per_propagated_element", 0)),
                      canonical)
    golden = registration_load_gas(schedule, nodes=nodes, golden_runs=golden_runs, gas_per_call=report.gas)
    registration, deferred_check = check + golden, 0
    load = load_gas(schedule, model_bytes=len(canonical), nodes=nodes, golden_runs=golden_runs,
                    gas_per_call=report.gas)
    if check > int(vm.get("defer_check_gas_over", check)):  # deferred activation (vm/deferred.py): resident
        # (vm/resident.py): the cold path's terms in tokens with the check; each block pays the rest.
        cold = load_gas(schedule, model_bytes=len(canonical), nodes=nodes, golden_runs=0, gas_per_call=0)
        registration, deferred_check = int(vm["gas_register_deferred"]) + golden, check + cold
        load = resident_load_gas(schedule, nodes=nodes, golden_runs=golden_runs, gas_per_call=report.gas)
    input_bytes = sum(math.prod(s.shape) * s.dtype.itemsize for s in meta.inputs)
    first_call = (int(vm.get("gas_infer_base", 0)) + int(vm.get("gas_infer_per_io_byte", 0)) * input_bytes
                  + report.gas + load)
    return GasQuote(registration, first_call, deferred_check, load)


def uncallable(vm: dict[str, Any] | None, quote: GasQuote) -> None:
    """CliError, before anything is signed, when an inference that is the model's first use in its block
    would need more gas than one transaction may carry: the chain would register the model (a later
    governance change of vm.max_tx_gas could make it callable), but no inference on it could be included
    today, so its registration fees would buy nothing. An explicit --gas-limit skips this, as it skips the
    registration's own cap check."""
    if vm is None or "max_tx_gas" not in vm:
        return
    cap = int(vm["max_tx_gas"])
    if quote.first_call > cap:
        raise CliError(f"an inference on this model needs {quote.first_call} gas when it is the first use in its "
                       f"block (the call and the model's cold load), over the chain's per-transaction maximum "
                       f"{cap} (vm.max_tx_gas): no inference on it could be included, so it is not registered")


# `model retire` lives in its own module (one command, its own idea); registered here so `inferchain model` lists it.
from node.cli.model_retire import retire  # noqa: E402

model.add_command(retire)

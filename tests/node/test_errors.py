"""Every error class of every layer is remote (refuse the input) or local (our fault), never both."""

from __future__ import annotations

from typing import Any

import pytest

import node.cli.common
import node.devnet
import node.rpc.errors
import node.service
import p2p.errors
import vm.sandbox.errors
from core.errors import InferchainError, InvalidTransaction, LocalError, RemoteError, StorageError
from node.rpc.dispatch import Registry, handle_one
from node.rpc.errors import INTERNAL_ERROR, INVALID_PARAMS

pytestmark = pytest.mark.node


def _subclasses(root: type[InferchainError]) -> set[type[InferchainError]]:
    out: set[type[InferchainError]] = set()
    todo = [root]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in out:
                out.add(sub)
                todo.append(sub)
    return out


def test_every_error_of_every_layer_is_remote_or_local_never_both() -> None:
    loaded = (node.cli.common, node.devnet, node.rpc.errors, node.service, p2p.errors, vm.sandbox.errors)
    assert all(module.__name__ for module in loaded)  # imported so that their classes are registered
    found = _subclasses(InferchainError) - {RemoteError, LocalError}
    assert {p2p.errors.BadResponse, node.rpc.errors.RpcError, vm.sandbox.errors.WorkerFault} <= found
    for cls in found:
        assert issubclass(cls, RemoteError) != issubclass(cls, LocalError), f"{cls.__module__}.{cls.__name__}"


@pytest.mark.trio
async def test_the_rpc_answers_a_remote_error_as_the_clients_and_a_local_one_as_the_servers() -> None:
    registry = Registry()

    @registry.method("bad_input", "raises a client's error", result="none", result_schema={})
    async def bad_input() -> Any:
        raise InvalidTransaction("nonce too low")

    @registry.method("broken_disk", "raises our own fault", result="none", result_schema={})
    async def broken_disk() -> Any:
        raise StorageError("database is corrupt")

    def call(name: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 7, "method": name}

    client = await handle_one(registry, call("bad_input"), {})
    server = await handle_one(registry, call("broken_disk"), {})
    assert client is not None and client["error"] == {"code": INVALID_PARAMS, "message": "nonce too low"}
    assert server is not None and server["error"] == {"code": INTERNAL_ERROR, "message": "database is corrupt"}

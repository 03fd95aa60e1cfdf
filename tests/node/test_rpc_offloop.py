"""RPC reads that decode or convert whole blocks run in worker threads, never on the node's event loop."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from core.types import Hash32, Height
from node.rpc import methods
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node


class RecordingChain(SimChain):
    """Notes the thread of every block-sized read."""

    def __init__(self) -> None:
        super().__init__()
        self.reader_threads: list[threading.Thread] = []

    def block(self, height: Height | None) -> Any:
        self.reader_threads.append(threading.current_thread())
        return super().block(height)

    def tx(self, tx_hash: Hash32) -> Any:
        self.reader_threads.append(threading.current_thread())
        return super().tx(tx_hash)

    def inference(self, tx_hash: Hash32) -> Any:
        self.reader_threads.append(threading.current_thread())
        return super().inference(tx_hash)


@pytest.mark.trio
async def test_block_tx_and_inference_reads_leave_the_event_loop() -> None:
    chain = RecordingChain()
    block = chain.produce()
    assert (await methods.block(chain, None))["height"] == 1
    assert (await methods.block(chain, Height(1)))["id"] == block.id.hex()
    missing = Hash32(b"\x01" * 32)
    for call in (methods.tx, methods.inference):
        with pytest.raises(methods.RpcError):  # not found, raised in the worker thread, reaches the caller
            await call(chain, missing)
    loop = threading.current_thread()
    assert len(chain.reader_threads) == 4
    assert all(thread is not loop for thread in chain.reader_threads)

"""Rendering an answer's JSON: small answers (a broadcast's verdicts) on the event loop, large ones (a block)
in a worker thread, so the node's loop never spends a block's rendering time and a small answer never pays a
thread hand-off."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from node.rpc import server

pytestmark = pytest.mark.node


def verdicts(n: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "result": [{"hash": f"{i:064x}", "accepted": i % 3 != 0,
                                                   **({"error": "nonce 0 already used"} if i % 3 == 0 else {})}
                                                  for i in range(n)]}


def block_like(txs: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "result": {"height": 9, "txs": [{"raw": "ab" * 240, "result": {
        "status": "ok", "gas_used": 21000, "log": ""}} for _ in range(txs)]}}


@pytest.mark.parametrize("answer", [verdicts(1), verdicts(64), verdicts(300), block_like(3), block_like(100),
                                    block_like(2000), {"a": [[[1, 2, None, True]] * 50] * 50}, [], "x" * 70_000])
def test_the_size_estimate_says_small_only_for_answers_under_the_limit(answer: Any) -> None:
    rendered = len(server._render_json(answer))
    if server.is_small_answer(answer):
        assert rendered <= server.INLINE_RENDER_BYTES
    else:
        assert rendered > server.INLINE_RENDER_BYTES // 4  # never sends a tiny answer to a thread


def test_a_broadcast_batch_is_small_and_a_block_is_not() -> None:
    assert server.is_small_answer(verdicts(64))
    assert not server.is_small_answer(block_like(2000))


@pytest.mark.trio
async def test_small_answers_render_on_the_loop_and_large_ones_in_a_worker_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    render = server._render_json

    def recording(content: Any) -> bytes:
        threads.append(threading.current_thread())
        return render(content)

    monkeypatch.setattr(server, "_render_json", recording)
    small, large = verdicts(64), block_like(2000)
    assert json.loads(await server.render_answer(small)) == small
    assert json.loads(await server.render_answer(large)) == large
    loop = threading.current_thread()
    assert threads[0] is loop and threads[1] is not loop

"""The RPC's view of a running `node.service.Node`: its read side (`node.queries.Queries`) plus the optional
method the API offers when the backend has it (chain parameters), and the status sample that the metrics
gauges read at scrape time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import InferchainError
from node.metrics import StatusSample

if TYPE_CHECKING:
    from node.service import Node


class NodeBackend:
    """Satisfies `node.rpc.api.NodeApi` by delegating to `node.queries`."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._queries = node.queries

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queries, name)

    def params(self) -> Any:
        """The chain parameters at the latest committed height."""
        return self._node.app.view().params()

    def status_sample(self) -> StatusSample | None:
        try:
            s = self._queries.status()
        except InferchainError:
            return None
        correct = wrong = missed = 0
        if s.validator is not None:
            try:
                mine = self._queries.validator(s.validator)
            except InferchainError:
                mine = None
            if mine is not None:
                correct, wrong, missed = mine.poi_correct, mine.poi_wrong, mine.poi_missed
        p2p = self._node.p2p
        counters = tuple(sorted(p2p.counters.snapshot().items())) if p2p is not None else ()
        return StatusSample(int(s.height), s.round, s.peers, s.mempool_size, s.mempool_bytes, s.is_validator,
                            correct, wrong, missed, s.catching_up, counters)

"""What every attack test asserts about the honest nodes of a real network (docs/security.md):

- they keep committing: no gap between consecutive block times over `MAX_GAP_S` (10 s, plus `SLACK_S` for a
  2-core machine shared with other suites, where a process may wait seconds for a core);
- the honest state is unharmed: the same block id and state root at every height on every honest node;
- memory stays bounded: resident set growth (VmRSS from /proc) under `MAX_RSS_GROWTH_KIB` per node;
- the attacker is penalized (`penalties`, from /metrics, and the node's log naming its peer id).

    watch = HonestWatch(net, [0, 1, 2, 3])
    ... mount the attack ...
    watch.check()
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.realnet import RealNet

MAX_GAP_S = 10.0
SLACK_S = 10.0
MAX_RSS_GROWTH_KIB = 256 * 1024

_P2P_EVENT = re.compile(r'^inferchain_p2p_events_total\{event="([^"]+)"\} ([0-9.e+]+)$')


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def node_rss_kib(net: RealNet, index: int) -> int:
    """The node process's RSS plus its sandbox workers' (its process group)."""
    pid = net.pid(index)
    total = rss_kib(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(OSError, AssertionError):  # a worker that just ended
            total += rss_kib(int(child))
    return total


def p2p_counters(net: RealNet, index: int) -> dict[str, float]:
    """The node's p2p counters (`P2PCounters.snapshot` names: penalties, disconnects, bans, ...) from /metrics."""
    text = httpx.get(net.spec(index).rpc_url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _P2P_EVENT.match(line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def penalties(net: RealNet, index: int) -> float:
    return p2p_counters(net, index).get("penalties", 0.0)


def log_mentions(net: RealNet, index: int, *needles: str) -> bool:
    """Whether one line of the node's log holds every needle (e.g. a peer id and "disconnect after")."""
    text = net.spec(index).log_path.read_text(errors="replace")
    return any(all(n in line for n in needles) for line in text.splitlines())


def is_dropped(net: RealNet, index: int, peer_id: str) -> bool:
    """The node disconnected or banned `peer_id` for its score (p2p.peers logs it)."""
    return log_mentions(net, index, f"peer {peer_id}: disconnect after") or \
        log_mentions(net, index, f"peer {peer_id}: ban after")


def max_commit_gap_s(net: RealNet, index: int, first: int, last: int) -> float:
    """The longest time between consecutive blocks first..last (block header times) on node `index`."""
    client = net.client(index)
    times = [int(client.block(h).header.time) for h in range(first, last + 1)]
    return max((b - a for a, b in itertools.pairwise(times)), default=0) / 1000


def assert_same_chain(net: RealNet, nodes: Sequence[int], first: int, last: int) -> None:
    for h in range(first, last + 1):
        headers = [net.client(i).block(h).header for i in nodes]
        assert len({hd.block_id for hd in headers}) == 1, f"nodes {list(nodes)} disagree on block {h}"
        assert len({hd.state_root for hd in headers}) == 1, f"nodes {list(nodes)} disagree on the state root at {h}"


class HonestWatch:
    """Samples the honest nodes when an attack starts; `check` asserts what docs/security.md promises."""

    def __init__(self, net: RealNet, nodes: Sequence[int]) -> None:
        self.net = net
        self.nodes = list(nodes)
        self.start_height = min(net.height(i) for i in self.nodes)
        self.rss = {i: node_rss_kib(net, i) for i in self.nodes}
        self.penalties = {i: penalties(net, i) for i in self.nodes}

    def new_penalties(self, index: int) -> float:
        return penalties(self.net, index) - self.penalties[index]

    def check(self, *, min_blocks: int = 3) -> int:
        """Assert progress, no long gap, one chain, bounded memory; returns the height checked up to."""
        net = self.net
        net.wait_height(self.start_height + min_blocks, self.nodes, timeout=60)
        top = min(net.height(i) for i in self.nodes)
        gap = max_commit_gap_s(net, self.nodes[0], max(1, self.start_height), top)
        assert gap <= MAX_GAP_S + SLACK_S, f"a {gap:.1f} s gap between blocks {self.start_height}..{top}"
        assert_same_chain(net, self.nodes, max(1, self.start_height), top)
        for i in self.nodes:
            growth = node_rss_kib(net, i) - self.rss[i]
            assert growth <= MAX_RSS_GROWTH_KIB, f"node{i} grew by {growth} KiB during the attack"
        return top

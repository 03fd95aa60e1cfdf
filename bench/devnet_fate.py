"""Where every accepted transaction of a devnet bench step ended up: asked of every node, not inferred.

After a step's drain, each transaction an endpoint accepted but the block observer did not see committed is
looked up on every node with the `tx_status` RPC (docs/rpc.md), and classified:

- `committed`: some node's block store holds it (on node 0 too: the observer missed it; only elsewhere: node 0
  is behind);
- `pending`: in some node's mempool, `ready` (proposable) or only `gapped` (behind a nonce gap: it cannot go
  into a block before its sender's missing nonce does);
- `rejected`: in no mempool, and the node that accepted it says why it left (evicted, expired, replaced,
  nonce already used...);
- `lost`: no node holds it or remembers it: the one outcome that would be silent data loss.

So the bench's `pending` figure is split into what is still on its way and what will never land, with the
node's own reason for each (the 14,503 "pending" of docs/performance-throughput.md "Tiny inference on the devnet").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from node.client import Client

STATUS_CHUNK = 256  # hashes per tx_status call (node.rpc.methods.MAX_STATUS_HASHES)


@dataclass
class Fates:
    """The classification of one step's accepted transactions that the observer did not see committed."""

    observer_missed: int = 0  # committed on node 0
    committed_elsewhere: int = 0  # committed on another node, not (yet) on node 0
    pending_ready: int = 0
    pending_gapped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by the accepting node's reason
    lost: int = 0
    asked: set[bytes] = field(default_factory=set)  # the hashes classified
    # Pending ones by how many nodes' mempools hold them: gossip's reach (a proposal naming a transaction
    # its validators lack waits for it, then is dropped: docs/performance-throughput.md, "Proposals that name what validators lack")
    held_by: Counter[int] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return (self.observer_missed + self.committed_elsewhere + self.pending_ready + self.pending_gapped
                + sum(self.rejected.values()) + self.lost)

    def line(self) -> str:
        parts = [f"committed on node 0 but not read by the observer {self.observer_missed}",
                 f"committed on a node ahead of node 0 {self.committed_elsewhere}",
                 f"pending ready {self.pending_ready}", f"pending gapped {self.pending_gapped}",
                 *(f"{reason} {n}" for reason, n in self.rejected.most_common()),
                 f"LOST (no node holds or remembers it) {self.lost}"]
        line = f"accepted, not seen committed: {self.total} = " + "; ".join(parts)
        if self.held_by:
            line += "; pending held by " + ", ".join(f"{k} node{'s' if k > 1 else ''} {n}"
                                                     for k, n in sorted(self.held_by.items()))
        return line


def statuses(url: str, hashes: Sequence[bytes]) -> dict[bytes, dict[str, object]]:
    """`tx_status` of each of `hashes` on the node at `url`."""
    out: dict[bytes, dict[str, object]] = {}
    with Client(url, timeout=60) as client:
        for at in range(0, len(hashes), STATUS_CHUNK):
            chunk = hashes[at:at + STATUS_CHUNK]
            answers = client.call("tx_status", {"hashes": [h.hex() for h in chunk]}, timeout=60)
            for h, answer in zip(chunk, answers, strict=True):
                out[h] = answer
    return out


def classify(urls: Sequence[str], accepted_by: dict[bytes, int], unseen: Iterable[bytes]) -> Fates:
    """Ask every node (`urls`, node 0 first: the observer's) about each of `unseen`; `accepted_by` names the
    index in `urls` of the endpoint that accepted each hash (whose reason for a rejection is reported)."""
    hashes = list(unseen)
    fates = Fates(asked=set(hashes))
    if not hashes:
        return fates
    per_node = [statuses(url, hashes) for url in urls]
    for h in hashes:
        answers = [node[h] for node in per_node]
        states = [a["status"] for a in answers]
        if states[0] == "committed":
            fates.observer_missed += 1
        elif "committed" in states:
            fates.committed_elsewhere += 1
        elif "pending" in states:
            fates.held_by[states.count("pending")] += 1
            if any(s == "pending" and not a.get("gapped") for s, a in zip(states, answers, strict=True)):
                fates.pending_ready += 1
            else:
                fates.pending_gapped += 1
        else:
            own = answers[accepted_by.get(h, 0)]
            if own["status"] == "rejected":
                fates.rejected[f"rejected: {own.get('reason')}"] += 1
            elif "rejected" in states:
                reason = next(a.get("reason") for a in answers if a["status"] == "rejected")
                fates.rejected[f"rejected elsewhere: {reason}"] += 1
            else:
                fates.lost += 1
    return fates

"""Coalescing: the RPCs queued for one peer leave as one pubsub frame, not one frame each.

Every pubsub RPC costs its sender and its receiver the same fixed work whatever its size: a protobuf
serialization and parse, a varint frame, a Yamux frame, a Noise encryption and decryption, a socket write
and read and a trio wake-up on each side (docs/performance-cpu.md, "Fewer frames per message"). A peer's sending
loop (`GuardedPubsub.handle_sending_messages`) therefore takes, after the RPC it waited for, the RPCs queued
behind it at that moment and writes them as one RPC; it never waits for more to arrive, so no message is
delayed by coalescing.

What may be merged (`is_mergeable`): RPCs that hold published messages, IDONTWANT announcements and our
signed peer record, nothing else. Their merge is protobuf's `MergeFrom`: the publish lists concatenate in
queue order, the announcements' lists concatenate, the record (the same bytes in each) stays one. A receiver
handles a frame's publishes in order, then its control, so merging changes nothing it does. Subscriptions and
the other control messages (GRAFT, PRUNE, IHAVE, IWANT), rare and order-sensitive, keep a frame of their own.

Which RPCs: those of one lane. A frame is the RPC popped and the RPCs of the same lane queued behind it:
consensus messages and IDONTWANT announcements (the priority lane, `CountingGossipSub`) with each other,
transaction batches (the bulk lane) with each other, never the two together, so a consensus message never
waits for transaction bytes merged in with it, and a batch is popped only while no consensus message waits. A
merged frame grows only while it stays within `COALESCE_BYTES`, far under the peer's frame limit: a consensus
message queued behind it waits no longer than behind one full batch. Each RPC is checked against the peer's
IDONTWANT announcements as it is taken, so a merged frame carries no copy the peer said it holds.

Bulk batches were kept out at first: a receiver drops a copy where it reads it only if the first copy is
waiting for admission or in validation (`Gate.is_copy`), and with every message of a frame becoming a task at
once, a copy read from another peer before the first copy's task started slipped through (the full-mesh
IDONTWANT test failed 3 in 10 runs with bulk merged). Batches now wait in the forwarder's inbound queue
(p2p/inbound.py), which `is_copy` consults, and a consensus message's pending task is consulted too
(tests/p2p/test_p2p_copies_on_read.py), so that window is closed.
"""

from __future__ import annotations

from libp2p.pubsub.pb import rpc_pb2

from p2p.limits import TX_BATCH_TARGET

# A merged frame grows while it stays within this many bytes (see above): votes merge; a proposal larger than
# this goes alone, as before.
COALESCE_BYTES = TX_BATCH_TARGET

_RPC_FIELDS = frozenset({"publish", "control", "senderRecord"})


def is_mergeable(rpc: rpc_pb2.RPC) -> bool:
    """Whether the RPC holds only published messages, IDONTWANT announcements and a peer record."""
    fields = rpc.ListFields()
    if any(f.name not in _RPC_FIELDS for f, _ in fields):
        return False
    if rpc.HasField("control"):
        return all(f.name == "idontwant" for f, _ in rpc.control.ListFields())
    return True

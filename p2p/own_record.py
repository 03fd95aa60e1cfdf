"""Our signed peer record for outbound pubsub RPCs, looked up once a while instead of once per RPC.

Upstream attaches the host's signed peer record to every RPC it builds (`env_to_send_in_RPC`): a publish, each
relay, control and subscription RPCs. Each call lists the host's listen addresses again (`get_addrs`: the
listeners' sockets turned into multiaddrs, parsed, with the peer id appended) to compare them with the cached
record's: on a loaded validator ~4 % of the event loop's busy samples, once per message published or relayed.
`cached_record` answers from the last result for `RECORD_TTL_S`; after that, or for another host, it asks
upstream again, which re-issues the record if the addresses changed. So a changed address reaches the records
we send at most `RECORD_TTL_S` late (peers learn addresses from identify too; the peerstore keeps them two
hours).

A process-wide rebind of the name in `libp2p.pubsub.gossipsub` and `libp2p.pubsub.pubsub` (as p2p/yamux.py
does for Yamux); tests/p2p/test_own_record.py fails if it stops taking effect.
"""

from __future__ import annotations

import time
import weakref

from libp2p.abc import IHost
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub import gossipsub as upstream_gossipsub
from libp2p.pubsub import pubsub as upstream_pubsub

RECORD_TTL_S = 5.0

_records: weakref.WeakKeyDictionary[IHost, tuple[bytes, float]] = weakref.WeakKeyDictionary()


def cached_record(host: IHost) -> tuple[bytes, bool]:
    """Upstream's `env_to_send_in_RPC(host)`: (the record's bytes, whether it was issued just now)."""
    now = time.monotonic()
    held = _records.get(host)
    if held is not None and now - held[1] < RECORD_TTL_S:
        return held[0], False
    record, issued = env_to_send_in_RPC(host)
    _records[host] = (record, now)
    return record, issued


upstream_gossipsub.env_to_send_in_RPC = cached_record  # type: ignore[attr-defined]
upstream_pubsub.env_to_send_in_RPC = cached_record  # type: ignore[attr-defined]

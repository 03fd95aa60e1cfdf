"""The signed peer record on pubsub RPCs: verified once per peer and record, never taken unverified."""

from __future__ import annotations

import pytest
from libp2p.peer.envelope import seal_record
from libp2p.peer.id import ID
from libp2p.peer.peer_record import PeerRecord
from libp2p.pubsub.pb import rpc_pb2
from multiaddr import Multiaddr

from p2p.host import build_host
from p2p.identity import node_key_from_seed
from p2p.pubsub import SenderRecords

pytestmark = [pytest.mark.p2p]


def rpc_with_record(seed: bytes, port: int, seq: int, *, signer_seed: bytes | None = None) -> tuple[rpc_pb2.RPC, ID]:
    """An RPC carrying the signed record of the peer made from `seed` (signed by `signer_seed`'s key if given)."""
    key = node_key_from_seed(seed)
    peer = ID.from_pubkey(key.public_key)
    signer = node_key_from_seed(signer_seed) if signer_seed is not None else key
    record = PeerRecord(peer, [Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")], seq)
    envelope = seal_record(record, signer.private_key)
    return rpc_pb2.RPC(senderRecord=envelope.marshal_envelope()), peer


def test_a_repeated_record_is_verified_once_a_changed_or_aged_one_again() -> None:
    host = build_host(node_key_from_seed(b"us"), ["/ip4/127.0.0.1/tcp/0"])
    now = [0.0]
    records = SenderRecords(host, refresh_s=60.0, clock=lambda: now[0])
    rpc, peer = rpc_with_record(b"peer", 4001, 1)
    for _ in range(5):
        assert records.consume(rpc, peer)
    assert records.checks == 1
    assert host.get_peerstore().get_peer_record(peer) is not None  # stored by upstream's check
    moved, _ = rpc_with_record(b"peer", 4002, 2)
    assert records.consume(moved, peer)
    assert records.checks == 2
    now[0] = 61.0
    assert records.consume(moved, peer)
    assert records.checks == 3
    assert records.consume(rpc_pb2.RPC(), peer)  # no record: nothing to check
    assert records.checks == 3


def test_a_record_forged_or_of_another_peer_is_refused_every_time() -> None:
    host = build_host(node_key_from_seed(b"us"), ["/ip4/127.0.0.1/tcp/0"])
    records = SenderRecords(host)
    forged, peer = rpc_with_record(b"peer", 4001, 1, signer_seed=b"mallory")
    for _ in range(3):
        assert not records.consume(forged, peer)
    assert records.checks == 3  # a refused record is never remembered
    theirs, _ = rpc_with_record(b"someone-else", 4001, 1)
    good, _ = rpc_with_record(b"peer", 4001, 1)
    assert records.consume(good, peer)
    for _ in range(2):
        assert not records.consume(theirs, peer)  # valid, but not the sender's: refused though `good` is known
    assert records.checks == 3 + 1 + 2
    records.forget(peer)
    assert len(records) == 0

"""Work done once per message on real services (docs/p2p.md, "Work done once per message"): the message id hashed once per
node and copy, the pubsub signature checked once per message admitted from a peer (never for our own), our
signed peer record not rebuilt for every RPC, and a message whose pubsub signature is bad still refused."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import trio
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from p2p.batcher import encode_tx_batch
from p2p.config import PenaltyPolicy
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

KEY = validator_keys(1)[0]


@pytest.mark.trio
async def test_each_message_is_hashed_once_per_node_and_its_pubsub_signature_checked_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two nodes; node 0 publishes vote and transaction batches, node 1 receives each once. Across both nodes
    a message's bytes are hashed at most three times (the publisher's id, its return value; the receiver's
    read), and one pubsub signature is verified per message (the receiver's). Before: 12 hashes (upstream's
    seen checks, mark, router; the gate's admit and deliver, on each side) and three verifications (the
    receiver's twice, and upstream's check of our own publish)."""
    payloads: list[bytes] = []
    hashed: dict[bytes, int] = {}
    verified = 0
    sha256 = hashlib.sha256
    verify = Ed25519PublicKey.verify

    def counting_sha256(data: Any = b"", *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, bytes) and data in hashed:
            hashed[data] += 1
        return sha256(data, *args, **kwargs)

    def counting_verify(self: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
        nonlocal verified
        if data.startswith(PUBSUB_SIGNING_PREFIX.encode()):
            verified += 1
        return verify(self, data, signature)

    inbox = Inbox()
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: inbox.attach(s) if i == 1 else None) as nodes:
            await wait_for_mesh(nodes)
            for height in range(1, 4):
                payloads.append(make_vote(CHAIN, KEY, height).encode())
            for batch in range(3):
                payloads.append(encode_tx_batch([make_tx(CHAIN, 10 * batch + i).encode() for i in range(5)]))
            hashed.update({p: 0 for p in payloads})
            monkeypatch.setattr(hashlib, "sha256", counting_sha256)
            monkeypatch.setattr(Ed25519PublicKey, "verify", counting_verify)
            for data in payloads[:3]:
                await nodes[0].publish(TopicKind.VOTES, data)
            for data in payloads[3:]:
                await nodes[0].publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: len(inbox.messages[TopicKind.VOTES]) == 3
                             and len(inbox.messages[TopicKind.TXS]) == 3)
            monkeypatch.undo()
    assert verified == len(payloads)
    assert all(1 <= n <= 3 for n in hashed.values()), hashed


@pytest.mark.trio
async def test_a_bad_pubsub_signature_is_refused_and_a_good_one_from_the_same_peer_admitted() -> None:
    """The one pubsub signature check left (GuardedPubsub.push_msg) still refuses a message whose signature does
    not verify, with the forwarder's BAD_SIGNATURE offense, and is not bypassed for the next message."""
    inbox = Inbox()
    lenient = PenaltyPolicy(disconnect_below=-1e9, ban_below=-2e9)
    with trio.fail_after(60):
        async with running_nodes(1, penalties=lenient, configure=lambda i, s: inbox.attach(s)) as nodes:
            victim = nodes[0]
            votes = victim.gossip.topic(TopicKind.VOTES)
            async with attacker(b"bad pubsub signature") as bad:
                stream = await bad.open_meshsub(victim.addr)
                forged = bad.signed_message(votes, make_vote(CHAIN, KEY, 7).encode())
                forged.signature = bytes(64)
                await Attacker.send_rpc(stream, rpc_pb2.RPC(publish=[forged]))
                offenses = victim.peers.scores
                await wait_until(lambda: offenses.score(str(bad.peer_id), trio.current_time()) < 0)
                good = make_vote(CHAIN, KEY, 8).encode()
                await Attacker.send_rpc(stream, rpc_pb2.RPC(publish=[bad.signed_message(votes, good)]))
                await wait_until(lambda: any(m.data == good for m in inbox.messages[TopicKind.VOTES]))
            assert [m.data for m in inbox.messages[TopicKind.VOTES]] == [good]


@pytest.mark.trio
async def test_our_peer_record_is_not_rebuilt_for_each_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream listed the host's listen addresses (to compare with its record's) for every RPC it built; within
    p2p/own_record.py's RECORD_TTL_S ten publishes list them at most once."""
    with trio.fail_after(60):
        async with running_nodes(2) as nodes:
            await wait_for_mesh(nodes)
            host = nodes[0].host
            listed = 0
            get_addrs = host.get_addrs

            def counting_get_addrs() -> Any:
                nonlocal listed
                listed += 1
                return get_addrs()

            monkeypatch.setattr(host, "get_addrs", counting_get_addrs)
            for height in range(10):
                await nodes[0].publish(TopicKind.VOTES, make_vote(CHAIN, KEY, 100 + height).encode())
            monkeypatch.undo()
    assert listed <= 1


@pytest.mark.trio
async def test_an_rpc_within_the_size_is_queued_without_being_split_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's `send_rpc` rebuilt every RPC for every peer through `split_rpc` (a copy of each message); an
    RPC within the queue's size now goes to the queue as it is, and still arrives."""
    from libp2p.pubsub.rpc_queue import RpcQueue

    inbox = Inbox()
    splits = 0
    split_rpc = RpcQueue.split_rpc

    def counting_split(self: RpcQueue, rpc: rpc_pb2.RPC) -> list[rpc_pb2.RPC]:
        nonlocal splits
        splits += 1
        return split_rpc(self, rpc)

    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: inbox.attach(s) if i == 1 else None) as nodes:
            await wait_for_mesh(nodes)
            monkeypatch.setattr(RpcQueue, "split_rpc", counting_split)
            data = encode_tx_batch([make_tx(CHAIN, i).encode() for i in range(5)])
            await nodes[0].publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: len(inbox.messages[TopicKind.TXS]) == 1)
            monkeypatch.undo()
    assert splits == 0

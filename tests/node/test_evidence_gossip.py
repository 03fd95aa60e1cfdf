"""The node's gossip hook for evidence (node.gossip_hooks): only evidence against a validator of its height, of
a recent height, is relayed and handed to consensus (checking WrongInference evidence means re-running a
model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from libp2p.peer.id import ID

from core.evidence import EvidenceEnvelope, duplicate_vote
from core.hashing import sha256
from core.keys import PrivateKey
from core.types import Height, Round, SignatureBytes, Timestamp
from core.votes import Vote, VoteType
from node.gossip_hooks import GossipHooks
from node.service import Node, consensus_params
from p2p.topics import TopicKind
from p2p.validation import GossipMessage, GossipVerdict
from tests.node.helpers import genesis_doc, local_node, make_home, validator_key
from tools.genesis import DEFAULT_SEED_PHRASE

pytestmark = pytest.mark.node


def _equivocation(key: PrivateKey, chain_id: str, height: int) -> GossipMessage:
    def vote(block: bytes) -> Vote:
        return Vote(VoteType.PREVOTE, Height(height), Round(0), sha256(block), Timestamp(1), key.public_key,
                    None, SignatureBytes(b"\0" * 64)).signed(key, chain_id)

    envelope = EvidenceEnvelope(duplicate_vote(vote(b"a"), vote(b"b")))
    data = envelope.encode()
    peer = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))
    return GossipMessage(TopicKind.EVIDENCE, data, envelope, sha256(data), peer, peer)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    home = make_home(tmp_path, "n0", genesis_doc(1), validator=0)
    n = local_node(home)
    yield n
    n.close()


def _hooks(node: Node) -> GossipHooks:
    return GossipHooks(node.chain, consensus_params(node.genesis, node.config).max_evidence_age)


@pytest.mark.trio
async def test_evidence_against_a_validator_of_a_recent_height_is_accepted(node: Node) -> None:
    message = _equivocation(validator_key(DEFAULT_SEED_PHRASE, 0), node.chain_id, 1)
    assert await _hooks(node).evidence(message) is GossipVerdict.ACCEPT


@pytest.mark.trio
async def test_evidence_against_a_key_that_never_validated_is_rejected(node: Node) -> None:
    message = _equivocation(PrivateKey.derive("outsider", "validator", 0), node.chain_id, 1)
    assert await _hooks(node).evidence(message) is GossipVerdict.REJECT


@pytest.mark.trio
async def test_evidence_from_the_far_future_is_ignored(node: Node) -> None:
    message = _equivocation(validator_key(DEFAULT_SEED_PHRASE, 0), node.chain_id, 50)
    assert await _hooks(node).evidence(message) is GossipVerdict.IGNORE

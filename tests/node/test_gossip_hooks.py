"""The node's gossip hooks for votes (and, by the same membership rule, proposals): a vote is relayed only from
a validator of its height, for a height next to the one being decided."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.hashing import sha256
from core.keys import PrivateKey
from core.types import Height, Round, SignatureBytes, Timestamp
from core.votes import Vote, VoteType
from node.gossip_hooks import vote_verdict
from node.service import Node
from p2p.validation import GossipVerdict
from tests.node.helpers import genesis_doc, local_node, make_home, validator_key
from tools.genesis import DEFAULT_SEED_PHRASE

pytestmark = pytest.mark.node


def _prevote(key: PrivateKey, chain_id: str, height: int) -> Vote:
    return Vote(VoteType.PREVOTE, Height(height), Round(0), sha256(b"block"), Timestamp(1), key.public_key, None,
                SignatureBytes(b"\0" * 64)).signed(key, chain_id)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = local_node(make_home(tmp_path, "n0", genesis_doc(2), validator=0))
    yield n
    n.close()


def test_a_vote_of_a_validator_for_the_next_height_is_accepted(node: Node) -> None:
    for i in (0, 1):
        assert vote_verdict(node.chain, _prevote(validator_key(DEFAULT_SEED_PHRASE, i), node.chain_id, 1)) \
            is GossipVerdict.ACCEPT


def test_a_vote_of_a_key_outside_the_set_is_rejected(node: Node) -> None:
    outsider = PrivateKey.derive("outsider", "validator", 0)
    assert vote_verdict(node.chain, _prevote(outsider, node.chain_id, 1)) is GossipVerdict.REJECT


def test_a_vote_for_a_height_far_from_ours_is_ignored(node: Node) -> None:
    key = validator_key(DEFAULT_SEED_PHRASE, 0)
    assert vote_verdict(node.chain, _prevote(key, node.chain_id, 3)) is GossipVerdict.IGNORE

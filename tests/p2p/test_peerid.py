"""The libp2p-free peer id and key bytes (p2p.peerid) are libp2p's own: for derived node keys, random keys,
the devnet's, and the node key file a devnet home gets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from node.devnet import Devnet
from node.home import load_node_key, save_node_key, save_seeded_node_key
from p2p.identity import node_key_from_seed, peer_id_of
from p2p.peerid import ed25519_peer_id, ed25519_private_key_protobuf, node_seed_peer_id, node_seed_secret

pytestmark = pytest.mark.p2p


# Named ids: a random seed's bytes as its id would differ between pytest-xdist workers' collections.
@pytest.mark.parametrize("seed", [b"\0" * 32, b"\xff" * 32, b"devnet node 3", os.urandom(32)],
                         ids=["zeros", "ones", "devnet-node-3", "random"])
def test_seeded_node_key_has_libp2ps_peer_id(seed: bytes) -> None:
    assert node_seed_peer_id(seed) == str(peer_id_of(node_key_from_seed(seed)))


def test_random_keys_have_libp2ps_peer_id() -> None:
    for _ in range(20):
        key = create_new_key_pair(seed=os.urandom(32))
        assert ed25519_peer_id(key.public_key.to_bytes()) == str(peer_id_of(key))


def test_devnet_bootstrap_addresses_name_the_nodes_real_ids() -> None:
    net = Devnet(None, validators=3, base_port=26700)
    for spec in net.specs():
        assert spec.peer_id == str(peer_id_of(node_key_from_seed(spec.node_seed)))


def test_a_key_of_another_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519_peer_id(b"\1" * 33)


def test_a_seeded_node_key_file_is_the_one_libp2p_writes(tmp_path: Path) -> None:
    """The devnet writes its homes' node keys without libp2p: the same bytes, and libp2p loads them."""
    for seed in (b"\0" * 32, b"devnet node 1", os.urandom(32)):
        ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
        save_seeded_node_key(ours, seed, overwrite=True)
        save_node_key(theirs, node_key_from_seed(seed), overwrite=True)
        assert ours.read_bytes() == theirs.read_bytes()
        assert peer_id_of(load_node_key(ours)) == peer_id_of(node_key_from_seed(seed))
        assert ed25519_private_key_protobuf(node_seed_secret(seed)) == node_key_from_seed(seed).private_key.serialize()

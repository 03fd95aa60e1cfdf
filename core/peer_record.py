"""A validator's signed statement that a libp2p peer id speaks for it: what binds peers to validator keys.

Peer ids are node keys (p2p.identity), separate from validator keys, and free to mint: anything that counts
peers as if they were validators (node.proposal_hold's grace) must count only peers proven to be distinct
validators. The record signs the peer id's bytes with the validator key; the link itself authenticates the
peer id (libp2p's secure channel), so a record replayed by another peer id names the wrong peer and proves
nothing. A record says nothing about the validator set: the reader checks the key is in it at its height.
"""

from __future__ import annotations

from typing import Annotated

from core.address import address_from_public_key
from core.codec import MaxLen, Wire, wire
from core.keys import PrivateKey, verify
from core.signing import DOMAIN_PEER_RECORD, sign_bytes
from core.types import Address, PublicKeyBytes, SignatureBytes

# A libp2p peer id's bytes: an identity multihash of an Ed25519 key is 38 bytes; room for a SHA-256 one too.
MAX_PEER_ID_BYTES = 64


@wire(max_bytes=256)
class ValidatorPeerRecord(Wire):
    """`validator` (an Ed25519 validator key) says: the peer whose id is `peer_id` is mine, on this chain."""

    peer_id: Annotated[bytes, MaxLen(MAX_PEER_ID_BYTES)]
    validator: PublicKeyBytes
    signature: SignatureBytes

    def sign_bytes(self, chain_id: str) -> bytes:
        return sign_bytes(DOMAIN_PEER_RECORD, self, chain_id)

    def verify_signature(self, chain_id: str) -> bool:
        return verify(self.validator, self.sign_bytes(chain_id), self.signature)

    @property
    def validator_address(self) -> Address:
        return address_from_public_key(self.validator)


def sign_peer_record(key: PrivateKey, peer_id: bytes, chain_id: str) -> ValidatorPeerRecord:
    """The record binding `peer_id` to the validator key `key` on `chain_id`."""
    unsigned = ValidatorPeerRecord(bytes(peer_id), key.public_key, SignatureBytes(b"\x00" * 64))
    return unsigned.replace(signature=key.sign(unsigned.sign_bytes(chain_id)))

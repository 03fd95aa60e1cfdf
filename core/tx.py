"""The transaction envelope. Kind-specific payloads are the VM's; the envelope is everyone's."""

from __future__ import annotations

from typing import Annotated

from core.address import address_from_public_key
from core.codec import U16, CachedWire, MaxLen, wire
from core.keys import PrivateKey, verify
from core.limits import MAX_CHAIN_ID_BYTES, MAX_TX_BYTES, MAX_TX_PAYLOAD_BYTES
from core.signing import DOMAIN_TX, sign_bytes
from core.types import Address, Amount, Gas, Hash32, Nonce, PublicKeyBytes, SignatureBytes

ZERO_SIGNATURE = SignatureBytes(b"\x00" * 64)


@wire(max_bytes=MAX_TX_BYTES)
class Transaction(CachedWire):
    """A signed transaction. `fee` is paid in full whatever the outcome; `gas_limit` caps the work.

    Its encoding and hash are computed once per instance (`CachedWire`): a block's transactions are hashed
    and encoded by the mempool, the proposer, every validator's checks and the Merkle roots.
    """

    chain_id: Annotated[str, MaxLen(MAX_CHAIN_ID_BYTES)]
    sender: PublicKeyBytes
    nonce: Nonce
    gas_limit: Gas
    fee: Amount
    kind: U16
    payload: Annotated[bytes, MaxLen(MAX_TX_PAYLOAD_BYTES)]
    signature: SignatureBytes

    @classmethod
    def create(cls, key: PrivateKey, *, chain_id: str, nonce: int, gas_limit: int, fee: int, kind: int,
               payload: bytes) -> Transaction:
        unsigned = cls(chain_id, key.public_key, Nonce(nonce), Gas(gas_limit), Amount(fee), kind, payload,
                       ZERO_SIGNATURE)
        return unsigned.replace(signature=key.sign(unsigned.sign_bytes()))

    def sign_bytes(self) -> bytes:
        return sign_bytes(DOMAIN_TX, self)

    def verify_signature(self) -> bool:
        return verify(self.sender, self.sign_bytes(), self.signature)

    @property
    def hash(self) -> Hash32:
        return self.digest()

    @property
    def sender_address(self) -> Address:
        return address_from_public_key(self.sender)

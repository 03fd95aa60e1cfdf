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
# The encoding is a msgpack array of the eight fields (header 0x98), the 64-byte signature last (bin8: 0xc4 0x40).
_ARRAY_OF_8, _ARRAY_OF_7 = 0x98, b"\x97"
_SIGNATURE_ENCODING = 2 + 64
_SIGNATURE_HEADER = b"\xc4\x40"


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
        """`core.signing.sign_bytes(DOMAIN_TX, self)`, cut from the encoding every node keeps per transaction:
        msgpack is concatenative, so the array of every field but the signature is the encoding's items less
        the signature's, under a header for seven. Saves building the field list and packing it again for
        each signature check (every transaction, every node)."""
        data = self.encode()
        if data[0] == _ARRAY_OF_8 and data[-_SIGNATURE_ENCODING:-64] == _SIGNATURE_HEADER:
            return DOMAIN_TX + _ARRAY_OF_7 + data[1:-_SIGNATURE_ENCODING]
        return sign_bytes(DOMAIN_TX, self)

    def verify_signature(self) -> bool:
        return verify(self.sender, self.sign_bytes(), self.signature)

    @property
    def hash(self) -> Hash32:
        # The cached hash read here (one call fewer than `digest()`: a node reads each transaction's hash a
        # dozen times); a copy made without __init__ has the slot unset.
        try:
            digest = self._wire_hash
        except AttributeError:
            digest = None
        return digest if digest is not None else self.digest()

    @property
    def sender_address(self) -> Address:
        """The sender's address, derived once per instance and kept in its memo (`CachedWire.derived`): a node
        asks for it at the RPC entry or gossip hook, the mempool's entry and update, and the explorer index.
        A read costs about what a hit in the bounded address cache did (~80 ns), without depending on its bound."""
        try:
            memo = self._wire_memo
        except AttributeError:  # made without __init__ (copy, pickle)
            memo = None
        if memo is not None:
            found: Address | None = memo.get("sender")
            if found is not None:
                return found
        return self.derived("sender", _sender_address)


def _sender_address(tx: Transaction) -> Address:
    return address_from_public_key(tx.sender)

"""Proposals, votes and commits: what validators sign in consensus."""

from __future__ import annotations

import enum
from typing import Annotated

from core.address import address_from_public_key
from core.codec import I64, MaxLen, Wire, wire
from core.hashing import sha256
from core.keys import PrivateKey, verify
from core.limits import MAX_VALIDATORS
from core.signing import DOMAIN_PROPOSAL, DOMAIN_VOTE, sign_bytes
from core.types import Address, Hash32, Height, PublicKeyBytes, Round, SignatureBytes, Timestamp

ZERO_SIGNATURE = SignatureBytes(b"\x00" * 64)


class VoteType(enum.IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


@wire(max_bytes=512)
class Vote(Wire):
    """A prevote or precommit; `block_id` None is a nil vote.

    A precommit carries the signer's proof-of-inference commitment for its height inside the signed bytes
    (`poi` = H(output ‖ validator address ‖ height)); None means the validator has no answer (a miss).
    Prevotes never carry one.
    """

    type: VoteType
    height: Height
    round: Round
    block_id: Hash32 | None
    timestamp: Timestamp
    validator: PublicKeyBytes
    poi: Hash32 | None
    signature: SignatureBytes

    def validate_wire(self) -> None:
        if self.type == VoteType.PREVOTE and self.poi is not None:
            raise ValueError("a prevote carries no PoI commitment")

    def sign_bytes(self, chain_id: str) -> bytes:
        return sign_bytes(DOMAIN_VOTE, self, chain_id)

    def signed(self, key: PrivateKey, chain_id: str) -> Vote:
        return self.replace(signature=key.sign(self.sign_bytes(chain_id)))

    def verify_signature(self, chain_id: str) -> bool:
        return verify(self.validator, self.sign_bytes(chain_id), self.signature)

    @property
    def validator_address(self) -> Address:
        return address_from_public_key(self.validator)

    @property
    def hash(self) -> Hash32:
        return sha256(self.encode())


@wire(max_bytes=512)
class Proposal(Wire):
    """The proposer's signed claim for (height, round); the block travels beside it (`ProposalBlock`)."""

    height: Height
    round: Round
    pol_round: I64  # -1 when there is no proof-of-lock round
    block_id: Hash32
    timestamp: Timestamp
    proposer: PublicKeyBytes
    signature: SignatureBytes

    def validate_wire(self) -> None:
        if not -1 <= self.pol_round < self.round:
            raise ValueError(f"pol_round {self.pol_round} must be -1 or below round {self.round}")

    def sign_bytes(self, chain_id: str) -> bytes:
        return sign_bytes(DOMAIN_PROPOSAL, self, chain_id)

    def signed(self, key: PrivateKey, chain_id: str) -> Proposal:
        return self.replace(signature=key.sign(self.sign_bytes(chain_id)))

    def verify_signature(self, chain_id: str) -> bool:
        return verify(self.proposer, self.sign_bytes(chain_id), self.signature)


@wire(max_bytes=600 * MAX_VALIDATORS + 128)
class Commit(Wire):
    """The precommits of the round that decided `block_id` at `height`.

    It keeps nil precommits of that round too (and precommits for other blocks), because each carries a PoI
    commitment that block h+2 scores. `verify_commit` in consensus checks it against a validator set.
    """

    height: Height
    round: Round
    block_id: Hash32
    precommits: Annotated[tuple[Vote, ...], MaxLen(MAX_VALIDATORS)]

    def validate_wire(self) -> None:
        seen: set[bytes] = set()
        for vote in self.precommits:
            if vote.type != VoteType.PRECOMMIT or vote.height != self.height or vote.round != self.round:
                raise ValueError("commit holds a vote that is not a precommit of its height and round")
            if vote.validator in seen:
                raise ValueError("commit holds two precommits of one validator")
            seen.add(vote.validator)

    @property
    def hash(self) -> Hash32:
        return sha256(self.encode())

"""Sign-bytes: what exactly a signature covers.

Every signed wire type keeps its signature as the last field. Its sign-bytes are a domain tag, then the
canonical msgpack array of the chain id (where the type does not carry one) and every field except the
signature. The tag makes a vote signature useless as a transaction signature and vice versa.
"""

from __future__ import annotations

import msgpack

from core.codec import Wire

DOMAIN_TX = b"inferchain/tx/v1\x00"
DOMAIN_VOTE = b"inferchain/vote/v1\x00"
DOMAIN_PROPOSAL = b"inferchain/proposal/v1\x00"
DOMAIN_PEER_RECORD = b"inferchain/peer-record/v1\x00"


def sign_bytes(domain: bytes, value: Wire, chain_id: str | None = None) -> bytes:
    fields = value.to_obj()[:-1]
    if chain_id is not None:
        fields = [chain_id, *fields]
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return domain + packed

"""Adversaries for tests: real peers that speak our protocols and misbehave (docs/security.md).

Not a mode of the shipped node: everything here lives under tests/. `AdversaryPeer` is our own p2p stack
(libp2p host, gossipsub, request/response) on a background trio loop, driven from a synchronous test;
`attacks` builds what each attack sends; `watch` is what every attack test asserts about the honest nodes;
`frames` writes raw pubsub frames below our stack (tests/p2p/attacker.py).
"""

from tests.adversary.peer import AdversaryPeer

__all__ = ["AdversaryPeer"]

"""Adversaries for tests: attacks mounted for real, over the real protocols, against real nodes (docs/security.md).

Not a mode of the shipped node: everything here lives under tests/.
- `peer.AdversaryPeer`: our own p2p stack (libp2p host, gossipsub, request/response) on a background trio loop,
  driven from a synchronous test, sending what a correct peer never would;
- `frames.Attacker`: a Noise host below our stack that writes raw pubsub frames (garbage, oversized, foreign);
- `attacks` builds what each attack sends; `watch` is what every attack test asserts about the honest nodes;
- `blackhole.BlackholeProxy`: a link that goes silent without closing.
A validator that goes silent without closing its connections is `RealNet.pause` (tests/realnet): SIGSTOP.
"""

from tests.adversary.peer import AdversaryPeer

__all__ = ["AdversaryPeer"]

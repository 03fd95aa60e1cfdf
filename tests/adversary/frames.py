"""Raw pubsub frames below our p2p stack: a Noise host that writes whatever it likes on /meshsub/1.1.0.

The attacker itself stays in tests/p2p/attacker.py, where the p2p suites use it; this is its place in the
adversary library.
"""

from tests.p2p.attacker import Attacker, attacker

__all__ = ["Attacker", "attacker"]

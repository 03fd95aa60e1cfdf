"""Adversaries for tests: attacks mounted for real, over the real protocols, against real nodes.

Not a mode of the shipped node. `peer` is a libp2p peer that speaks our gossip and request protocols and
sends what a correct peer never would (garbage and oversized frames, bad messages, a foreign peer that
speaks none of our protocols). A validator that goes silent without closing its connections is
`RealNet.pause` (tests/realnet): SIGSTOP of the node's process group.
"""

"""libp2p networking for Inferchain: identity, gossip topics and their validators, request/response sync.

p2p moves bytes and checks envelopes; it knows nothing of chain state. The node supplies the checks that need
state (hooks) and the data it serves (providers). See docs/p2p.md; comments citing "pitfall N" refer to its
list of upstream pitfalls.
"""

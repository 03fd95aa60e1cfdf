"""Tendermint BFT with proof-of-inference: a pure state machine plus its signer, WAL and evidence pool.

consensus never imports vm, p2p or node; it talks to the application only through core.app's Protocol,
by way of the actions the node's driver performs.
"""

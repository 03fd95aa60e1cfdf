"""Deterministic consensus simulator: stake-weighted validators over a seeded simulated network.

`scenario.py` turns a seed into a fault mix, `cluster.py` runs it and checks the invariants,
`replay.py` re-runs one seed verbosely (`python -m tests.consensus.sim.replay SEED`).
"""

"""Test tooling for p2p: a synthetic chain (`chain`) and a p2p node as an OS process (`node`).

Kept importable (as `trio.testing` is for trio) because both the tests and `bench/p2p.py` drive real node
processes with it; excluded from the wheel (pyproject `packages.find`), so a validator never runs it.
"""

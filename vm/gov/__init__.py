"""Governance (docs/governance.md): proposals with deposits, stake-weighted votes, and the tally and
execution at the end of each voting period, inside apply_block."""

"""`python -m node.cli ...` runs the same CLI as the `inferchain` console script (the devnet uses it)."""

from node.cli import main

main()

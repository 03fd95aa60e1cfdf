"""Spec vectors: the files under tests/vectors, which pin what a second implementation must reproduce.

    python -m tools.vectors            regenerate tests/vectors (`make vectors`)
    python -m tools.vectors --check    compare instead of writing; exit 1 naming the files that differ

Groups, one module each: `wire` (every wire type's canonical encoding with its decoded fields), `state`
(state roots and proofs for fixed key sets), `poi` (challenge derivations and commitments), `models` (the
ids and prices of the shipped models). `world` builds the real chain the wire vectors are taken from;
`render` turns wire values into JSON. `generate.generate()` returns every file's bytes; the suite compares
them with the committed files byte for byte (tests/vm/test_vectors.py). tests/vectors/README.md documents
the format.
"""

"""Developer tools, outside the packages a validator runs (excluded from the wheel).

    python -m tools.genesis --validators N --out FILE   a devnet genesis.json (tools/genesis.py)
    python -m tools.models [--out DIR]                  rebuild the committed models (`make models`)
    python -m tools.vectors [--out DIR] [--check]      regenerate tests/vectors (`make vectors`)
    python -m tools.random_weights IN OUT [--seed N]   a model's architecture with seeded random weights

`tools.attacks` is the corpus of hostile models registration must refuse (tests and benches use it).
Tools may import every runtime package; no runtime package imports a tool.
"""

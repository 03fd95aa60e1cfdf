"""The node: composition root and all I/O wiring (config, home, LevelDB stores, mempool, trio services).

`node.service.Node` is what the CLI, the devnet and the tests run; `node.queries.Queries` is the read side
the RPC server calls. See docs/node.md.
"""

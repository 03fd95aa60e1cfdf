"""The block explorer: static pages (HTML, CSS, JS) shipped in the package and served by the RPC server at
`/explorer`, built only on the node's own JSON-RPC and websocket API. See docs/explorer.md."""

"""Page sizes of the RPC's listing methods: one constant shared by the server, the node's queries and the
client (which imports this module alone, so a CLI command does not load the server)."""

MAX_MODELS_PAGE = 100

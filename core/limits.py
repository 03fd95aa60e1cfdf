"""Hard size limits of the wire format. Consensus parameters in genesis may set tighter ones, never looser.

py-libp2p refuses messages over 1 MiB, so a proposal with its block must stay below that (docs/design.md §5.4).
"""

KIB = 1024

MAX_CHAIN_ID_BYTES = 64
MAX_TX_PAYLOAD_BYTES = 288 * KIB  # a model chunk is at most 256 KiB plus its header
MAX_TX_BYTES = 296 * KIB
MAX_BLOCK_TXS = 10_000
MAX_BLOCK_BYTES = 960 * KIB
MAX_PROPOSAL_MESSAGE_BYTES = 1000 * KIB  # proposal + block; under the 1 MiB libp2p cap
MAX_VALIDATORS = 128
MAX_BLOCK_EVIDENCE = 32
MAX_TENSOR_DIMS = 8
MAX_TENSOR_BYTES = 256 * KIB
MAX_TX_OUTPUTS = 16
MAX_RESULT_DATA_BYTES = 1 * KIB
MAX_LOG_BYTES = 256
MAX_MERKLE_DEPTH = 32

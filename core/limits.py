"""Hard size limits of the wire format. Consensus parameters in genesis may set tighter ones, never looser.

Two kinds of cap live here. The value caps (a tensor, a transaction) are sized for real models: an ImageNet
image is 602,112 bytes, so a tensor may hold 1 MiB. The relay caps are what one gossip message can carry:
py-libp2p refuses messages over 1 MiB, so a proposal with its block stays below that (docs/design.md §5.4),
and genesis checks its block and inference parameters against them (vm.params.validate_params). A value
over its cap is refused with `core.errors.TooLarge`.
"""

KIB = 1024
MIB = 1024 * KIB

MAX_CHAIN_ID_BYTES = 64
MAX_TENSOR_BYTES = 1 * MIB
# An inference's payload is its tensors plus framing; a model chunk is at most 256 KiB plus its header, whose
# golden vectors may hold a full tensor.
MAX_TX_PAYLOAD_BYTES = MAX_TENSOR_BYTES + 64 * KIB
MAX_TX_BYTES = MAX_TX_PAYLOAD_BYTES + 8 * KIB
MAX_BLOCK_TXS = 10_000
# Relay caps: a block travels inside one proposal message, under the 1 MiB libp2p cap. Once proposals
# carry transaction ids and parts travel separately, these are the caps to raise.
MAX_BLOCK_BYTES = 960 * KIB
MAX_PROPOSAL_MESSAGE_BYTES = 1000 * KIB
MAX_VALIDATORS = 128
MAX_BLOCK_EVIDENCE = 32
MAX_TENSOR_DIMS = 8
MAX_TX_OUTPUTS = 16
MAX_RESULT_DATA_BYTES = 1 * KIB
MAX_LOG_BYTES = 256
MAX_MERKLE_DEPTH = 32

"""Hard size limits of the wire format. Consensus parameters in genesis may set tighter ones, never looser.

Three kinds of cap live here. The value caps (a tensor, a transaction) are sized for real models: an ImageNet
image is 602,112 bytes, so a tensor may hold 1 MiB. The gossip caps are what one gossip message can carry:
`P2P_FRAME_BYTES` (2 MiB) is the one frame cap of pubsub RPCs and request/response frames, which p2p configures
py-libp2p with (its default of 1 MiB would drop, at the sender, a transaction with a 1 MiB input), so a
transaction that must be gossiped, a compact proposal and gossiped evidence stay below that. The block cap is what block sync (in parts, p2p's
`blockpart` protocol), the WAL and the signer carry. Genesis checks its block and inference parameters
against them (vm.params.validate_params). A value over its cap is refused with `core.errors.TooLarge`.
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
# The frame cap of p2p, in one place: the largest pubsub RPC and request/response frame a node sends or reads
# (p2p.limits.LIBP2P_FRAME_MAX; p2p.pubsub sets py-libp2p's inbound and outbound sizes to it). Twice the largest
# transaction (MAX_TX_BYTES, ~1.07 MiB: an inference on a 1 MiB input), so one travels alone with room to spare.
P2P_FRAME_BYTES = 2 * MIB
# Gossip caps: one pubsub message's payload under the frame, less room for its envelope (topic, sender, seqno,
# signature, key). A transaction travels in a batch; alone, it may take all but the batch's framing. Proposals
# travel compact (core.compact: transactions by hash), under their own cap.
MAX_GOSSIP_MESSAGE_BYTES = P2P_FRAME_BYTES - 4 * KIB
MAX_GOSSIP_TX_BYTES = MAX_GOSSIP_MESSAGE_BYTES - 1 * KIB
MAX_COMPACT_PROPOSAL_BYTES = 1000 * KIB
# Block cap: blocks no longer ride in one message (compact proposals; block sync and commit catch-up fetch a
# large block in parts), so this bounds memory per block (the WAL, the signer's record, one sync in flight),
# not the frame. Genesis `max_block_bytes` sets the chain's own limit under it.
MAX_BLOCK_BYTES = 4 * MIB
# A proposal with its full block: what the signer and the WAL record.
MAX_PROPOSAL_MESSAGE_BYTES = MAX_BLOCK_BYTES + 16 * KIB
MAX_VALIDATORS = 128
MAX_BLOCK_EVIDENCE = 32
MAX_TENSOR_DIMS = 8
MAX_TX_OUTPUTS = 16
MAX_RESULT_DATA_BYTES = 1 * KIB
MAX_LOG_BYTES = 256
MAX_MERKLE_DEPTH = 32

assert MAX_TX_BYTES <= MAX_GOSSIP_TX_BYTES, "a transaction at the cap must be gossiped alone"

"""Protocol caps and gas prices for models (consensus data), and the node-local worker limits (not).

`SandboxLimits` and `GasSchedule` are part of the chain's VM parameters: every validator must use the same
values, so they are integers only. `WorkerLimits` is each node's own resource policy for its worker processes;
it can differ between nodes because hitting it is a local fault, never a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class GasSchedule:
    """Gas prices of static metering, calibrated to time by bench/gas_calibration.py (docs/sandbox.md, "Gas").

    A node's work is counted in work units (about 1/40 ns of one core each: one float MAC is one unit), and
    `work_units_per_gas` of them make one gas, so one gas is about 2.5 ns of work: half the 5 ns per gas the
    block limits promise (max_block_gas in a third of timeout_propose), a safety factor of 2.
    """

    per_call: int = 1_000
    per_node: int = 110
    work_units_per_gas: int = 100
    # Work units per MAC; element work is counted in work units by the op table (vm/sandbox/ops.py).
    per_mac: int = 1
    # Work units per byte of the outputs a node writes (activation memory).
    per_activation_byte: int = 4
    # Loading a model (session creation from its bytes, then its golden runs) is priced from static facts:
    # load_base + load_per_node x nodes + load_per_kib x ceil(file bytes / 1024) + golden runs x gas per
    # call (meter.load_gas; the VM charges it on a model's first use in a block, docs/vm.md "Gas").
    load_base: int = 50_000
    load_per_node: int = 15_000
    load_per_kib: int = 3_584

    def __post_init__(self) -> None:
        for name in ("per_call", "per_node", "per_mac", "per_activation_byte", "load_base", "load_per_node",
                     "load_per_kib"):
            if getattr(self, name) < 0:
                raise ValueError(f"GasSchedule.{name} must be >= 0")
        if self.work_units_per_gas < 1:
            raise ValueError("GasSchedule.work_units_per_gas must be >= 1")


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Caps every validator applies at registration (docs/design.md §2.11). Integers only: this is consensus data."""

    max_model_bytes: int = 128 * MIB  # ResNet-50, DenseNet-121 and Inception fit with their weights folded
    max_nodes: int = 4_096
    max_initializers: int = 4_096
    min_ir_version: int = 7
    max_ir_version: int = 10
    min_opset: int = 13
    max_opset: int = 21
    max_inputs: int = 16
    max_outputs: int = 16
    max_rank: int = 8
    max_tensor_elements: int = 1 << 24
    max_tensor_bytes: int = 64 * MIB
    # Sum of the sizes of every tensor computed at run time: an upper bound on a run's working memory.
    max_activation_bytes: int = 512 * MIB
    max_parameter_bytes: int = 128 * MIB
    max_macs: int = 8_000_000_000
    max_gas_per_call: int = 4_000_000_000
    # The canonicalizer folds a constant-only node only when its outputs are at most this large.
    max_fold_bytes: int = 1 * MIB
    # Longest reduction of a uint8 x uint8 integer MatMul/Conv: 32768 * 255 * 255 < 2^31 (no int32 overflow).
    max_integer_reduction: int = 32_768
    # Grid exponent k of q = round(y * 2^k); |y| < 2^(63-k) fits int64.
    max_grid_k: int = 40
    # Protocol minimum tolerance: t_rel >= min_t_rel_ppm parts per million, and t_abs (grid units) must cover
    # at least 2^min_abs_tolerance_log2 in real units (so t_abs >= 2^(k + min_abs_tolerance_log2), and >= 1).
    min_t_rel_ppm: int = 100
    max_t_rel_ppm: int = 1_000_000
    min_abs_tolerance_log2: int = -20
    gas: GasSchedule = field(default_factory=GasSchedule)

    def min_t_abs(self, grid_k: int) -> int:
        """Smallest t_abs (in grid units) the protocol accepts for grid exponent `grid_k`."""
        return 1 << max(0, grid_k + self.min_abs_tolerance_log2)


DEFAULT_LIMITS = SandboxLimits()

GIB = 1024 * MIB
# ONNX Runtime, numpy and onnx loaded in a worker, before any session.
WORKER_BASE_BYTES = 256 * MIB
# The node process: blocks, mempool, state caches, and a registration's model bytes (up to 3 copies of a
# 128 MiB model while it is assembled, hashed and handed to a worker).
NODE_RESERVE_BYTES = 1536 * MIB


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """One node's resource policy for its sandbox workers; exceeding it is a LocalFault, never a verdict."""

    # RLIMIT_AS of each worker process (virtual address space: ORT maps more than it touches).
    memory_bytes: int = 4096 * MIB
    # RLIMIT_CPU budget per hand-off, in whole CPU seconds on top of what the worker has used so far.
    cpu_seconds_per_batch: int = 60
    # Wall-clock limit per hand-off and for a worker to start.
    batch_timeout_s: float = 90.0
    start_timeout_s: float = 60.0
    # LRU bound of the per-worker session cache, by estimated session bytes (2 x model bytes + overhead):
    # three 128 MiB models, or many small ones.
    session_cache_bytes: int = 1024 * MIB
    # What one validator's workers may hold resident together (docs/sandbox.md, "Memory budget"): four
    # validators' sandboxes in 24 GiB leave 6 GiB each, of which the node process keeps NODE_RESERVE_BYTES.
    validator_budget_bytes: int = 6 * GIB
    # The chain's `vm.max_resident_bytes` (vm/resident.py): resident models' sessions are pinned outside the
    # session cache, each in the one worker its model id routes to, so the pool holds them once in all.
    resident_model_bytes: int = 512 * MIB

    def worker_resident_bytes(self) -> int:
        """What one worker may keep resident: its session cache, one run's activations, the runtime itself."""
        return self.session_cache_bytes + DEFAULT_LIMITS.max_activation_bytes + WORKER_BASE_BYTES

    def pinned_session_bytes(self) -> int:
        """The resident models' sessions, across the pool (a session is estimated at twice its file)."""
        return 2 * self.resident_model_bytes

    def validate_pool(self, size: int) -> None:
        """Refuse a pool whose workers could together exceed the validator's budget (ValueError)."""
        need = size * self.worker_resident_bytes() + self.pinned_session_bytes() + NODE_RESERVE_BYTES
        if need > self.validator_budget_bytes:
            raise ValueError(f"{size} sandbox workers may hold {need // MIB} MiB with the node, over the budget "
                             f"of {self.validator_budget_bytes // MIB} MiB (fewer workers or a smaller cache)")


def load_gas(schedule: GasSchedule, *, model_bytes: int, nodes: int, golden_runs: int, gas_per_call: int) -> int:
    """Gas of loading a model into a cold worker: session creation from static facts (file bytes, node
    count), plus the golden vectors the worker runs before the model's first use."""
    return (schedule.load_base + schedule.load_per_node * nodes + schedule.load_per_kib * -(-model_bytes // 1024)
            + golden_runs * gas_per_call)


def registration_load_gas(schedule: GasSchedule, *, nodes: int, golden_runs: int, gas_per_call: int) -> int:
    """Gas of a registration's golden runs: they run in the check's own job, on the session the check built
    from bytes already in the worker, so no cold load (no per-KiB term: the check's per-byte price covers
    the bytes' hand-off and that session); base, per node and the runs as `load_gas`."""
    return schedule.load_base + schedule.load_per_node * nodes + golden_runs * gas_per_call


def resident_load_gas(schedule: GasSchedule, *, nodes: int, golden_runs: int, gas_per_call: int) -> int:
    """The load charge of a resident model's first use in a block (vm/resident.py): its cold path (the per-KiB
    term) was paid in tokens at registration and every validator keeps its session pinned, so a block pays
    the base, per-node and golden-run terms only: `registration_load_gas`'s formula, for another reason."""
    return registration_load_gas(schedule, nodes=nodes, golden_runs=golden_runs, gas_per_call=gas_per_call)

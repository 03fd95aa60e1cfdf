"""Node configuration: one frozen value read from `config.toml` (or `config.json`) in the node home.

Every key is optional and has a safe default (listen and RPC on 127.0.0.1 only). Unknown keys and wrong
types are refused with a ConfigError naming the key, so a typo never silently falls back to a default.
Consensus timeouts come from genesis; the `[consensus]` section may override them locally (devnets, tests).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_P2P_PORT = 26656
DEFAULT_RPC_PORT = 26657
# Bounds of `worker_memory_mib`: below ~200 MiB a worker cannot even load ONNX Runtime.
MIN_WORKER_MEMORY_MIB = 256
MAX_WORKER_MEMORY_MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class P2PSection:
    listen_addrs: tuple[str, ...] = (f"/ip4/127.0.0.1/tcp/{DEFAULT_P2P_PORT}",)
    # Full multiaddrs with /p2p/<peer id>; redialed for as long as the node runs.
    bootstrap: tuple[str, ...] = ()
    max_peers: int = 50
    heartbeat_s: float = 1.0
    # Workers admitting inbound transaction batches from per-peer queues (p2p.inbound.InboundPolicy, same
    # default); 0 admits each batch at once in a task of its own, as before the queues (for A/B runs).
    inbound_bulk_workers: int = 16
    # Consensus messages on a second stream to each peer, never behind a batch being written (p2p/lane.py);
    # false keeps one stream per peer, as before the lane (for A/B runs).
    consensus_lane: bool = True


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True, slots=True)
class RPCSection:
    """The RPC server: where it binds, who may use it and how much each client may ask.

    Limits are per client (its IP address), so a load driver on the same host raises them here."""

    enabled: bool = True
    address: str = f"127.0.0.1:{DEFAULT_RPC_PORT}"
    # Bearer token every request but GET /health must carry (`Authorization: Bearer <token>`); required
    # when `address` binds beyond loopback.
    auth_token: str = ""
    # Host header names served besides the loopback names and the bound host ("*": any; DNS rebinding
    # protection off). Browser Origins admitted besides the node's own (same host and port).
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # Requests (HTTP requests and websocket messages) per second per client, with bursts of `burst`.
    requests_per_s: float = 100.0
    burst: int = 200
    # Requests of one client being answered at once (a commit-mode broadcast holds one for its wait).
    concurrent_per_client: int = 32
    websockets_per_client: int = 8
    subscriptions_per_client: int = 64
    # Request line and headers together.
    max_header_bytes: int = 64 * 1024

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class ConsensusSection:
    """Local overrides of genesis timeouts (milliseconds); None keeps the genesis value."""

    timeout_propose_ms: int | None = None
    timeout_propose_delta_ms: int | None = None
    timeout_prevote_ms: int | None = None
    timeout_prevote_delta_ms: int | None = None
    timeout_precommit_ms: int | None = None
    timeout_precommit_delta_ms: int | None = None
    timeout_commit_ms: int | None = None
    # Not in genesis: None keeps consensus.params.ConsensusParams's default.
    next_block_delay_ms: int | None = None
    # Idle pacing (node.idle): a height that starts with no transaction ready waits up to this long after the
    # last block before its round 0 (a transaction, or a peer's proposal or vote of the height, ends the wait).
    # None: the normal pace. Local timing only: when to start a height, never what goes into a block.
    idle_block_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MempoolSection:
    max_txs: int = 20_000
    max_bytes: int = 256 * 1024 * 1024
    max_txs_per_sender: int = 256
    # How far ahead of the account's nonce a transaction may be queued.
    max_nonce_gap: int = 64
    # Transactions a sender may have waiting behind a nonce gap (they cannot go into a block yet).
    max_gapped_per_sender: int = 16
    # A transaction not included within this many heights is dropped.
    ttl_heights: int = 600
    # ... or within this many while it still waits behind a nonce gap.
    gapped_ttl_heights: int = 60
    # A replacement (same sender and nonce) must raise the fee per gas by this many percent.
    replace_bump_percent: int = 10
    # Verified-signature cache size (transaction hashes).
    sig_cache_size: int = 100_000
    # Gossip transactions in batches: flush after this delay (seconds).
    gossip_batch_delay_s: float = 0.05
    # Our proposals name our own clients' transactions only once gossiped and out for a grace that follows
    # the lag peers show (node.proposal_hold); false proposes them at once (the behaviour before).
    hold_own_txs: bool = True


@dataclass(frozen=True, slots=True)
class SyncSection:
    enabled: bool = True
    # Blocks fetched per request (the peer may send fewer to stay under the frame limit).
    batch: int = 64
    # A node this many heights behind its best peer block-syncs before joining consensus.
    catch_up_threshold: int = 2


@dataclass(frozen=True, slots=True)
class NodeConfig:
    moniker: str = "inferchain-node"
    # Sign blocks and votes with validator_key.json when the key is in the validator set.
    validator: bool = True
    log_level: str = "info"
    # RLIMIT_AS of each of this node's sandbox workers (vm.sandbox.limits.WorkerLimits.memory_bytes), in MiB:
    # a node-local resource policy, never a chain rule. A check or load that exceeds it is this node's local
    # fault (a validator prevotes nil on what it cannot check, a proposer postpones a deferred activation).
    worker_memory_mib: int = 4096
    p2p: P2PSection = field(default_factory=P2PSection)
    rpc: RPCSection = field(default_factory=RPCSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    sync: SyncSection = field(default_factory=SyncSection)

    def __post_init__(self) -> None:
        validate_config(self)

    def replace(self, **changes: Any) -> NodeConfig:
        return dataclasses.replace(self, **changes)

    @property
    def worker_memory_bytes(self) -> int:
        """`worker_memory_mib` in bytes: what `WorkerLimits.memory_bytes` is set to for this node's workers."""
        return self.worker_memory_mib << 20


_SECTIONS: dict[str, type] = {
    "p2p": P2PSection,
    "rpc": RPCSection,
    "consensus": ConsensusSection,
    "mempool": MempoolSection,
    "sync": SyncSection,
}


def validate_config(cfg: NodeConfig) -> None:
    """Rules across fields; raises ConfigError with the key and the reason."""
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level: must be one of debug, info, warning, error; got {cfg.log_level!r}")
    if not MIN_WORKER_MEMORY_MIB <= cfg.worker_memory_mib <= MAX_WORKER_MEMORY_MIB:
        raise ConfigError(f"worker_memory_mib: must be between {MIN_WORKER_MEMORY_MIB} and {MAX_WORKER_MEMORY_MIB}")
    if not cfg.p2p.listen_addrs:
        raise ConfigError("p2p.listen_addrs: at least one listen address is required")
    for addr in cfg.p2p.listen_addrs:
        if not addr.startswith("/"):
            raise ConfigError(f"p2p.listen_addrs: not a multiaddr: {addr!r} (e.g. /ip4/127.0.0.1/tcp/26656)")
    for addr in cfg.p2p.bootstrap:
        if "/p2p/" not in addr:
            raise ConfigError(f"p2p.bootstrap: {addr!r} must end in /p2p/<peer id>")
    if cfg.p2p.max_peers < 1:
        raise ConfigError("p2p.max_peers: must be at least 1")
    if not 0 <= cfg.p2p.inbound_bulk_workers <= 1024:
        raise ConfigError("p2p.inbound_bulk_workers: must be between 0 and 1024")
    host, sep, port = cfg.rpc.address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"rpc.address: expected host:port, got {cfg.rpc.address!r}")
    rpc = cfg.rpc
    if not rpc.loopback and not rpc.auth_token:
        raise ConfigError(f"rpc.auth_token: required when rpc.address binds beyond loopback ({rpc.address})")
    if rpc.auth_token and (len(rpc.auth_token) < 16 or not rpc.auth_token.isprintable() or " " in rpc.auth_token):
        raise ConfigError("rpc.auth_token: at least 16 printable characters without spaces")
    for name in ("burst", "concurrent_per_client", "websockets_per_client", "subscriptions_per_client"):
        if getattr(rpc, name) < 1:
            raise ConfigError(f"rpc.{name}: must be positive")
    if not rpc.requests_per_s > 0:
        raise ConfigError("rpc.requests_per_s: must be positive")
    if not 1024 <= rpc.max_header_bytes <= 1 << 20:
        raise ConfigError("rpc.max_header_bytes: must be between 1024 and 1048576")
    for name in ("max_txs", "max_bytes", "max_txs_per_sender", "ttl_heights", "gapped_ttl_heights",
                 "sig_cache_size"):
        if getattr(cfg.mempool, name) < 1:
            raise ConfigError(f"mempool.{name}: must be positive")
    mp = cfg.mempool
    if mp.max_nonce_gap < 0 or mp.replace_bump_percent < 0 or mp.max_gapped_per_sender < 0:
        raise ConfigError("mempool.max_nonce_gap, mempool.max_gapped_per_sender and "
                          "mempool.replace_bump_percent must not be negative")
    for f in dataclasses.fields(ConsensusSection):
        value = getattr(cfg.consensus, f.name)
        if f.name.endswith("_ms") and value is not None and not 0 <= value <= 600_000:
            raise ConfigError(f"consensus.{f.name}: must be between 0 and 600000 ms")
    if not 1 <= cfg.sync.batch <= 1000:
        raise ConfigError("sync.batch: must be between 1 and 1000")


# ---------------------------------------------------------------------------------------------------------
# reading


def load_config(path: str | Path) -> NodeConfig:
    """Read a config file (`.toml` or `.json`); a missing file is an error, a missing key is the default."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (run `inferchain init` first)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        if path.suffix == ".json":
            doc = json.loads(raw)
        else:
            doc = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    try:
        return config_from_dict(doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# Keys older homes may still hold: accepted and ignored with a warning, so those homes keep starting.
RETIRED_KEYS = {"consensus.create_empty_blocks": "nothing read it; idle chains slow down with "
                                                  "consensus.idle_block_time_ms instead"}


def config_from_dict(doc: Any) -> NodeConfig:
    if not isinstance(doc, dict):
        raise ConfigError("config must be a table of sections")
    top: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _SECTIONS:
            top[key] = _section(key, _SECTIONS[key], value)
        else:
            top[key] = value
    cfg: NodeConfig = _build(NodeConfig, top, "")
    return cfg


def _section(name: str, cls: type, value: Any) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return _build(cls, value, f"{name}.")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if f"{where}{key}" in RETIRED_KEYS:
            logger.warning("config: %s%s is no longer read (%s)", where, key, RETIRED_KEYS[f"{where}{key}"])
            continue
        f = fields.get(key)
        if f is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key {where}{key!r} (known: {known})")
        kwargs[key] = value if key in _SECTIONS and not where else _coerce(f"{where}{key}", f.type, value)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {exc}") from None


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    text = str(annotation)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    if text.startswith("tuple[str"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings")
        return tuple(value)
    if text.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if text.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if text.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if text.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported type {annotation}")


# ---------------------------------------------------------------------------------------------------------
# writing


def config_to_dict(cfg: NodeConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = {k.name: _plain(getattr(value, k.name)) for k in dataclasses.fields(value)}
        else:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def dump_config(cfg: NodeConfig) -> str:
    """The config as TOML (keys with value None are written as comments, meaning 'use genesis')."""
    lines = ["# Inferchain node configuration. Every key is optional; see docs/node.md.", ""]
    doc = config_to_dict(cfg)
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"]
            for k, v in value.items():
                lines.append(f"# {k} = (genesis value)" if v is None else f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: str | Path, cfg: NodeConfig) -> None:
    path = Path(path)
    text = json.dumps(config_to_dict(cfg), indent=2) + "\n" if path.suffix == ".json" else dump_config(cfg)
    path.write_text(text)

"""A local devnet: N validator processes on 127.0.0.1, each with its own home and ports under `.devnet/`.

Validator i's consensus key is `PrivateKey.derive(seed_phrase, "validator", i)` and its libp2p key derives
from the same seed, so every node's peer id is known before any process starts and each home lists all
the others as bootstrap peers. With 4 validators the repository's genesis.json is used as is; another N
runs `python -m tools.genesis --validators N` (same seed, same derivation). State persists across
restarts (homes are only created once); `reset` deletes the directory.

    devnet = Devnet(root, validators=4)
    devnet.prepare()            # genesis and homes, idempotent
    devnet.start_all()          # one `python -m node.cli node run` process per validator
    ...
    devnet.stop_all()           # SIGINT, bounded wait, SIGTERM, SIGKILL

Ports: node i listens for p2p on `base_port + 2i` and RPC on `base_port + 2i + 1`, or, with `base_port=0`,
on free ports the OS hands out, recorded per node in `devnet.json` (so `status`, `down` and a restart find
them). Genesis overrides (`{"consensus": {...}, "vm": {...}}`) and the number of funded accounts make a
genesis with the genesis tool instead of the repository's file.

The CLI's `devnet up|status|down` drive this class; tests/realnet (the real-network test harness, see
docs/testing.md) drives it to start, kill, pause and restart nodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigError, LocalError
from core.keys import PrivateKey

DEFAULT_VALIDATORS = 4
DEFAULT_BASE_PORT = 26700
DEFAULT_SEED_PHRASE = "inferchain devnet publicly known seed - never use these keys for anything of value"
MANIFEST = "devnet.json"
PID_FILE = "devnet.pid"
# Round 0 of the next height starts this long after the last block's time when every precommit is in (a
# local config override: consensus.params.ConsensusParams.next_block_delay_ms; docs/performance-latency.md,
# "Latency: the wait after a commit").
NEXT_BLOCK_DELAY_MS = 200
STOP_GRACE_S = 10.0
TERM_GRACE_S = 5.0


class NodeProcess(Protocol):
    """A running node as the devnet holds it: a `subprocess.Popen`, or a `node.devnet_fork.ForkedNode`."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...


class DevnetError(LocalError):
    """The devnet directory or its processes are not in the state a command needs."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    index: int
    home: Path
    p2p_port: int
    rpc_port: int
    node_seed: bytes
    validator_address: str

    @property
    def peer_id(self) -> str:
        """Computed without libp2p (p2p.peerid): creating homes and `devnet status` need only its text."""
        from p2p.peerid import node_seed_peer_id

        return node_seed_peer_id(self.node_seed)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def p2p_addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"


def node_key_seed(seed_phrase: str, index: int) -> bytes:
    """The libp2p identity seed of devnet node `index` (distinct from its consensus key by purpose)."""
    return PrivateKey.derive(seed_phrase, "node", index).seed


class Devnet:
    def __init__(self, root: Path | str | None = None, *, validators: int = DEFAULT_VALIDATORS,
                 base_port: int = DEFAULT_BASE_PORT, block_time_ms: int | None = None,
                 seed_phrase: str = DEFAULT_SEED_PHRASE, python: str = sys.executable,
                 genesis_overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 accounts: int | None = None, idle_block_time_ms: int | None = None,
                 from_genesis: Path | None = None) -> None:
        self.root = Path(root) if root is not None else repo_root() / ".devnet"
        self.validators = validators
        self.base_port = base_port
        self.block_time_ms = block_time_ms
        self.idle_block_time_ms = idle_block_time_ms  # node.idle; None: every height at the normal pace
        self.from_genesis = from_genesis  # an exported state (inferchain export) to fork from (vm.fork)
        self.seed_phrase = seed_phrase
        self.python = python
        self.genesis_overrides = {k: dict(v) for k, v in (genesis_overrides or {}).items()}
        self.accounts = accounts
        # Node index -> (p2p port, rpc port) where not base_port + 2i: free ports, recorded in the manifest.
        self.ports: dict[int, tuple[int, int]] = {}
        self.procs: dict[int, NodeProcess] = {}

    @classmethod
    def open(cls, root: Path | str | None = None) -> Devnet:
        """The devnet already prepared in `root`, as its manifest describes it (count, seed, ports)."""
        net = cls(root)
        manifest = net.load_manifest()
        if manifest is None:
            raise DevnetError(f"no devnet in {net.root} (start one with `inferchain devnet up`)")
        net.validators = int(manifest["validators"])
        net.seed_phrase = str(manifest.get("seed_phrase", DEFAULT_SEED_PHRASE))
        net._adopt_ports(manifest)
        return net

    # ------------------------------------------------------------------------------------------ layout

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    def home(self, index: int) -> Path:
        return self.root / f"node{index}"

    def spec(self, index: int) -> NodeSpec:
        address = str(PrivateKey.derive(self.seed_phrase, "validator", index).address)
        p2p_port, rpc_port = self.ports_of(index)
        return NodeSpec(index, self.home(index), p2p_port, rpc_port, node_key_seed(self.seed_phrase, index), address)

    def ports_of(self, index: int) -> tuple[int, int]:
        """Node `index`'s (p2p, rpc) ports: recorded ones, else base_port + 2i and + 2i + 1."""
        if index in self.ports:
            return self.ports[index]
        if not self.base_port:
            raise DevnetError(f"node{index} has no ports yet (free ports are assigned by prepare or add_ports)")
        return self.base_port + 2 * index, self.base_port + 2 * index + 1

    def add_ports(self, indices: list[int]) -> None:
        """Give nodes `indices` free ports (an extra node, or every node before the devnet is created)."""
        fresh = free_ports(2 * len(indices), avoid={p for pair in self.ports.values() for p in pair})
        for k, index in enumerate(indices):
            self.ports[index] = (fresh[2 * k], fresh[2 * k + 1])
        if (self.root / MANIFEST).exists():
            self._write_manifest()

    def move_to_free_ports(self) -> None:
        """New free ports for every node with a home (after another program took one of ours): rewrites
        each home's listen, RPC and bootstrap addresses and the manifest. The nodes must be stopped."""
        from node.config import load_config, write_config

        if any(p.poll() is None for p in self.procs.values()):
            raise DevnetError("stop the nodes before moving them to other ports")
        indices = sorted(set(range(self.validators)) | set(self.ports))
        self.ports.clear()
        self.base_port = 0
        self.add_ports(indices)
        validator_addrs = [s.p2p_addr for s in self.specs()]
        for index in indices:
            spec = self.spec(index)
            path = spec.home / "config.toml"
            if not path.exists():
                continue
            cfg = load_config(path)
            p2p = _replace(cfg.p2p, listen_addrs=(f"/ip4/127.0.0.1/tcp/{spec.p2p_port}",),
                           bootstrap=tuple(a for a in validator_addrs if a != spec.p2p_addr))
            write_config(path, cfg.replace(p2p=p2p, rpc=_replace(cfg.rpc, address=f"127.0.0.1:{spec.rpc_port}")))

    def specs(self) -> list[NodeSpec]:
        return [self.spec(i) for i in range(self.validators)]

    def load_manifest(self) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.root / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DevnetError(f"{self.root / MANIFEST}: unreadable ({exc}); use --reset to start over") from None
        return doc if isinstance(doc, dict) else None

    # ------------------------------------------------------------------------------------------ setup

    def reset(self) -> None:
        if self.running_pids():
            raise DevnetError("the devnet is running; stop it first (`inferchain devnet down`)")
        shutil.rmtree(self.root, ignore_errors=True)

    def prepare(self) -> bool:
        """Create genesis and every home unless they exist; True when created now. Refuses a directory
        made for another validator count or seed (state must not silently mix chains)."""
        manifest = self.load_manifest()
        if manifest is not None and self.from_genesis is not None:
            raise DevnetError(f"{self.root} holds a devnet already; --from-genesis starts a new one "
                              "(use another --dir, or --reset)")
        if manifest is not None:
            if manifest.get("validators") != self.validators or manifest.get("seed_phrase") != self.seed_phrase:
                raise DevnetError(
                    f"{self.root} holds a devnet of {manifest.get('validators')} validators; "
                    f"pass --reset to start over with {self.validators}")
            self._adopt_ports(manifest)
            self._write_consensus_overrides()
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.base_port:
            self.add_ports([i for i in range(self.validators) if i not in self.ports])
        self._write_genesis()
        for spec in self.specs():
            self.init_home(spec.index, validator=True)
        self._write_manifest()
        return True

    def _adopt_ports(self, manifest: dict[str, Any]) -> None:
        self.base_port = int(manifest.get("base_port", self.base_port))
        ports = manifest.get("ports") or {}
        self.ports = {int(i): (int(pair[0]), int(pair[1])) for i, pair in ports.items()}

    def _write_manifest(self) -> None:
        previous = self.load_manifest() or {}
        doc = {"validators": self.validators, "base_port": self.base_port, "seed_phrase": self.seed_phrase,
               "genesis": str(self.genesis_path), "created": previous.get("created", int(time.time())),
               "ports": {str(i): list(pair) for i, pair in sorted(self.ports.items())}}
        (self.root / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")

    def _write_genesis(self) -> None:
        if self.from_genesis is not None:
            self._write_fork_genesis(self.from_genesis)
            return
        repo_genesis = repo_root() / "genesis.json"
        if (self.validators == DEFAULT_VALIDATORS and self.seed_phrase == DEFAULT_SEED_PHRASE
                and not self.genesis_overrides and self.accounts is None and repo_genesis.exists()):
            shutil.copyfile(repo_genesis, self.genesis_path)
            return
        # The genesis tool is developer tooling (tools/, not in the wheel): run it as a process from the
        # checkout, never imported into the node (docs/architecture.md).
        cmd = [self.python, "-m", "tools.genesis", "--validators", str(self.validators),
               "--seed-phrase", self.seed_phrase, "--out", str(self.genesis_path)]
        if self.accounts is not None:
            cmd += ["--accounts", str(self.accounts)]
        if self.genesis_overrides:
            cmd += ["--overrides", json.dumps(self.genesis_overrides)]
        done = subprocess.run(cmd, cwd=repo_root(), capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise DevnetError(f"genesis tool failed: {last}")

    def _write_fork_genesis(self, exported_path: Path) -> None:
        """A genesis that forks the exported state (node.export's file, vm.fork): this devnet's validators
        replace the exported set, under the chain id `<exported>-fork`, timed after the exported block."""
        try:
            exported = json.loads(exported_path.read_text())
            meta = exported["exported"]
            chain_id = f"{exported['chain_id']}-fork"[:64]
            block_time = int(meta["block_time_ms"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DevnetError(f"{exported_path}: not a file from `inferchain export` ({exc})") from None
        ours_path = self.root / "validators.json"
        previous = self.from_genesis
        self.from_genesis = None
        try:
            self._write_genesis()  # the devnet's own genesis, for its validator section
        finally:
            self.from_genesis = previous
        ours = json.loads(self.genesis_path.read_text())
        self.genesis_path.rename(ours_path)
        doc = {**exported, "chain_id": chain_id, "genesis_time": block_time + 1000, "keys": ours.get("keys"),
               "validators": ours["validators"], "accounts": [],
               "note": f"A fork of {exported['chain_id']} at height {meta['height']} (state root "
                       f"{meta['state_root']}), with this devnet's validators. {ours.get('note', '')}".strip()}
        self.genesis_path.write_text(json.dumps(doc) + "\n")
        ours_path.unlink()

    def init_home(self, index: int, *, validator: bool, bootstrap: list[str] | None = None) -> NodeSpec:
        """Create node `index`'s home (its derived keys, its ports, every other devnet node as bootstrap)."""
        from node.config import ConsensusSection, NodeConfig, P2PSection, RPCSection
        from node.home import init_home

        if not self.base_port and index not in self.ports:
            self.add_ports([index])
        spec = self.spec(index)
        peers = bootstrap if bootstrap is not None else [
            s.p2p_addr for s in self.specs() if s.index != index]
        config = NodeConfig(
            moniker=f"devnet-{index}", validator=validator,
            p2p=P2PSection(listen_addrs=(f"/ip4/127.0.0.1/tcp/{spec.p2p_port}",), bootstrap=tuple(peers)),
            # A devnet's clients are load drivers and tests on this machine: per-client limits far above a
            # public node's (docs/rpc.md), still finite.
            rpc=RPCSection(address=f"127.0.0.1:{spec.rpc_port}", requests_per_s=100_000.0, burst=100_000,
                           concurrent_per_client=512, websockets_per_client=64, subscriptions_per_client=1024),
            consensus=ConsensusSection(timeout_commit_ms=self.block_time_ms, next_block_delay_ms=self._block_delay_ms(),
                                       idle_block_time_ms=self.idle_block_time_ms))
        init_home(spec.home, self.genesis_path, config=config,
                  validator_key=PrivateKey.derive(self.seed_phrase, "validator", index) if validator else None,
                  generate_validator_key=False, node_key_seed=node_key_seed(self.seed_phrase, index),
                  overwrite=spec.home.exists())
        return spec

    def _block_delay_ms(self) -> int:
        """--block-time paces blocks whether or not every precommit is in; else the devnet's default."""
        return NEXT_BLOCK_DELAY_MS if self.block_time_ms is None else self.block_time_ms

    def _write_consensus_overrides(self) -> None:
        """Apply --block-time and the idle block time to existing homes, and the devnet's block delay to homes
        made before it existed (all local config overrides, not genesis values)."""
        from node.config import load_config, write_config

        for index in range(self.validators):
            path = self.home(index) / "config.toml"
            if not path.exists():
                continue
            cfg = load_config(path)
            old = cfg.consensus
            new = _replace(old, timeout_commit_ms=old.timeout_commit_ms if self.block_time_ms is None
                           else self.block_time_ms,
                           next_block_delay_ms=old.next_block_delay_ms if old.next_block_delay_ms is not None
                           and self.block_time_ms is None else self._block_delay_ms(),
                           idle_block_time_ms=self.idle_block_time_ms)
            if new != old:
                write_config(path, cfg.replace(consensus=new))

    # ------------------------------------------------------------------------------------------ processes

    def start(self, index: int, *, extra_env: dict[str, str] | None = None) -> NodeProcess:
        """Start node `index` as `python -m node.cli node run`; output appends to its node.log."""
        spec = self.spec(index)
        if not spec.home.exists():
            raise DevnetError(f"{spec.home}: no such node home")
        log = open(spec.log_path, "ab")  # noqa: SIM115 - owned by the child process from here on
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "node.cli", "node", "run", "--home", str(spec.home)],
                cwd=repo_root(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)  # our own signal handling decides when children stop
        finally:
            log.close()
        self.procs[index] = proc
        return proc

    def start_all(self, *, fork: bool = False) -> None:
        """Start every node not running. `fork`: import the node here once and fork each node from this process
        (node.devnet_fork: ~1 s of CPU less per node), where this process can fork safely; else start each as
        its own `python -m node.cli node run`."""
        from node import devnet_fork

        wanted = [s for s in self.specs() if s.index not in self.procs or self.procs[s.index].poll() is not None]
        fork = fork and bool(wanted) and devnet_fork.can_fork()
        if fork:
            devnet_fork.preload()
            fork = devnet_fork.can_fork()  # an import that started a thread makes forking unsafe
        for spec in wanted:
            if fork:
                if not spec.home.exists():
                    raise DevnetError(f"{spec.home}: no such node home")
                self.procs[spec.index] = devnet_fork.fork_node(spec.home, spec.log_path, repo_root())
            else:
                self.start(spec.index)
        self.write_pid_file()

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (a crash, for tests)."""
        proc = self.procs.pop(index, None)
        if proc is not None and proc.poll() is None:
            signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=STOP_GRACE_S)

    def stop(self, index: int) -> int | None:
        proc = self.procs.pop(index, None)
        if proc is None:
            return None
        return stop_processes([proc])[0]

    def stop_all(self) -> list[int | None]:
        procs = list(self.procs.values())
        self.procs.clear()
        codes = stop_processes(procs)
        self.remove_pid_file()
        return codes

    # ------------------------------------------------------------------------------------------ pid file

    def write_pid_file(self) -> None:
        doc = {"supervisor": os.getpid(), "nodes": {str(i): p.pid for i, p in self.procs.items()},
               "rpc": {str(s.index): s.rpc_url for s in self.specs()}}
        (self.root / PID_FILE).write_text(json.dumps(doc, indent=2) + "\n")

    def remove_pid_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / PID_FILE).unlink()

    def read_pid_file(self) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.root / PID_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def running_pids(self) -> dict[str, int]:
        """Processes named in the pid file that are still alive (supervisor and nodes)."""
        doc = self.read_pid_file()
        if doc is None:
            return {}
        alive: dict[str, int] = {}
        candidates = {"supervisor": doc.get("supervisor")} | {
            f"node{i}": pid for i, pid in (doc.get("nodes") or {}).items()}
        for name, pid in candidates.items():
            if isinstance(pid, int) and pid_alive(pid):
                alive[name] = pid
        return alive

    def down(self) -> list[str]:
        """Stop a devnet started elsewhere (by its pid file): the supervisor first, then any node left."""
        alive = self.running_pids()
        stopped = []
        supervisor = alive.pop("supervisor", None)
        if supervisor is not None and supervisor != os.getpid():
            os.kill(supervisor, signal.SIGTERM)
            if wait_pids([supervisor], STOP_GRACE_S + TERM_GRACE_S + 5):
                stopped.append(f"supervisor {supervisor}")
        leftover = [pid for pid in alive.values() if pid_alive(pid)]
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        if not wait_pids(leftover, STOP_GRACE_S):
            for pid in leftover:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        stopped += [f"node pid {pid}" for pid in leftover]
        self.remove_pid_file()
        return stopped


def _replace(section: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(section, **changes)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def wait_pids(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def signal_group(proc: NodeProcess, sig: signal.Signals) -> None:
    """Send `sig` to the node and its sandbox workers (each node runs in its own session: pgid == pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_processes(procs: list[NodeProcess]) -> list[int | None]:
    """SIGINT every process, wait up to STOP_GRACE_S, SIGTERM the rest, then SIGKILL their process groups;
    returns exit codes. A process paused with SIGSTOP is continued first, or it could not see SIGINT."""
    for p in procs:
        if p.poll() is None:
            signal_group(p, signal.SIGCONT)
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 5.0)):
        running = [p for p in procs if p.poll() is None]
        if not running:
            break
        for p in running:
            if sig == signal.SIGKILL:
                signal_group(p, sig)
            else:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(sig)
        deadline = time.monotonic() + grace
        for p in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
    return [p.poll() for p in procs]


def free_ports(count: int, *, avoid: set[int] | None = None) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that the OS reports free now (all held open at once, so they
    differ). Another program may still take one before a node binds it: a node that cannot bind says so
    and exits, and the caller moves the devnet to new ports (`move_to_free_ports`)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in (avoid or set()):
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def account_keys(seed_phrase: str, count: int) -> list[PrivateKey]:
    return [PrivateKey.derive(seed_phrase, "account", i) for i in range(count)]


def genesis_accounts(genesis_path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(genesis_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{genesis_path}: cannot read genesis ({exc})") from None
    return list(doc.get("accounts", []))

"""`RealNet`: a devnet of real node processes on free ports, for tests and benches.

    with RealNet(tmp_path / "net", validators=4, block_time_ms=200) as net:
        net.start()                       # free ports, every process really serving, or NetworkError
        net.wait_height(3)                # every running node at height >= 3, bounded
        net.client(1).broadcast_tx(tx)    # one typed RPC client per node
        net.kill(3); net.restart(3)       # crash and come back (same home, same ports)
        net.pause(2); net.resume(2)       # SIGSTOP / SIGCONT: silent without closing its connections
        net.route(0, 2, proxy.port)       # before start: node 0 dials node 2 through a proxy the test runs
        i = net.add_node()                # an extra non-validator node that syncs from the validators
    # leaving the block stops every process: SIGINT, then SIGTERM, then SIGKILL of its process group

Homes, keys and genesis come from `node.devnet.Devnet` (validator i's keys derive from the public devnet
seed). Ports come from the OS; a node that finds one taken (another program got it first) exits with its
one-line "cannot listen" message, and `start` moves the whole network to new free ports and tries again.
A node counts as ready only when its process is alive and its RPC answers with this chain's id, that node's
own peer id and, among its listen addresses, the p2p address it was given (the node reports that once its
p2p host listens and it runs): an open port alone may belong to another program. Every failure message carries each
node's state, height and log tail (`describe`). This module does not use pytest: `bench/` drives it too.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from core.keys import PrivateKey
from node.client import Client, RpcError
from node.devnet import (
    DEFAULT_SEED_PHRASE,
    Devnet,
    DevnetError,
    NodeProcess,
    NodeSpec,
    signal_group,
    stop_processes,
)
from tests.realnet.waits import wait_until

T = TypeVar("T")

BIND_FAILURE = "cannot listen on"  # the start of a node's one-line message when an address is taken
BIND_ATTEMPTS = 3
START_TIMEOUT_S = 120.0
CLIENT_TIMEOUT_S = 10.0
LOG_LINES = 40

_live: list[RealNet] = []  # started and not yet closed: stopped at interpreter exit if a caller could not


class NetworkError(AssertionError):
    """The network could not be brought to the state a test asked for; the message says why, with logs."""


class NodeExited(NetworkError):
    """A node process ended while the network needed it."""

    def __init__(self, index: int, code: int, message: str, *, bind_failure: bool) -> None:
        super().__init__(message)
        self.index = index
        self.code = code
        self.bind_failure = bind_failure


class RealNet:
    def __init__(self, root: Path | str, *, validators: int = 4, block_time_ms: int | None = 200,
                 genesis: Mapping[str, Mapping[str, Any]] | None = None, accounts: int | None = None,
                 env: Mapping[str, str] | None = None, seed_phrase: str = DEFAULT_SEED_PHRASE,
                 node_config: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        """`genesis` overrides parameter sections (`{"consensus": {"max_block_gas": ...}}`), `accounts` sets
        how many funded accounts genesis holds (account i's key: `account_key(i)`), `env` is added to every
        node process's environment, `block_time_ms` is each node's timeout_commit and next_block_delay.
        `node_config` sets config keys of single nodes (`{3: {"worker_memory_mib": 300}}`; a section's keys
        as a table, `{0: {"mempool": {"max_txs": 10}}}`), written into their homes before the first start."""
        self.devnet = Devnet(Path(root), validators=validators, base_port=0, block_time_ms=block_time_ms,
                             seed_phrase=seed_phrase, genesis_overrides=genesis, accounts=accounts)
        self.env = dict(env or {})
        self.chain_id = ""
        self.exit_codes: dict[int, int | None] = {}
        self._extra: set[int] = set()
        self._paused: set[int] = set()
        self._clients: dict[int, Client] = {}
        self._routes: dict[tuple[int, int], int | None] = {}  # (dialer, peer) -> proxy port, or None: no dial
        self._node_config = {index: dict(keys) for index, keys in (node_config or {}).items()}

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self, *, timeout: float = START_TIMEOUT_S) -> RealNet:
        """Create the network (genesis, homes, free ports) and start every node; returns when each one
        serves. Moves to new ports and retries when a node finds its port taken."""
        self.devnet.prepare()
        self._write_node_config()
        self._write_routes()
        self.chain_id = str(json.loads(self.devnet.genesis_path.read_text())["chain_id"])
        if self not in _live:
            _live.append(self)
        from tests.realnet import report

        report.touch(self)
        for attempt in range(1, BIND_ATTEMPTS + 1):
            for index in self.indices:
                if not self.is_running(index):
                    self.devnet.start(index, extra_env=self.env)
            try:
                self.wait_ready(self.indices, timeout=timeout)
                return self
            except NodeExited as exc:
                if not exc.bind_failure or attempt == BIND_ATTEMPTS:
                    raise
                self._stop_all()
                self._drop_clients()
                self.devnet.move_to_free_ports()
                self._write_routes()
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop every process (SIGCONT, SIGINT, SIGTERM, then SIGKILL of its group; bounded) and the clients.
        Raises NetworkError if a process survived that."""
        try:
            self._stop_all()
        finally:
            self._drop_clients()
            if self in _live:
                _live.remove(self)
        survivors = [i for i, code in self.exit_codes.items() if code is None]
        if survivors:
            raise NetworkError(f"node(s) {survivors} survived SIGKILL")

    def __enter__(self) -> RealNet:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _stop_all(self) -> None:
        indices = list(self.devnet.procs)
        codes = self.devnet.stop_all()
        self.exit_codes.update(zip(indices, codes, strict=True))
        self._paused.clear()

    def _drop_clients(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # ------------------------------------------------------------------------------------------ nodes

    @property
    def validators(self) -> int:
        return self.devnet.validators

    @property
    def indices(self) -> list[int]:
        """Every node with a home: the genesis validators 0..n-1, then nodes added by `add_node`."""
        return sorted(set(range(self.devnet.validators)) | self._extra)

    @property
    def running(self) -> list[int]:
        return [i for i in self.indices if self.is_running(i)]

    def spec(self, index: int) -> NodeSpec:
        return self.devnet.spec(index)

    def pid(self, index: int) -> int:
        proc = self.devnet.procs.get(index)
        if proc is None or proc.poll() is not None:
            raise NetworkError(f"node{index} is not running")
        return proc.pid

    def is_running(self, index: int) -> bool:
        proc = self.devnet.procs.get(index)
        return proc is not None and proc.poll() is None

    def is_paused(self, index: int) -> bool:
        return index in self._paused

    def client(self, index: int) -> Client:
        """This node's RPC client (kept open; closed with the network)."""
        if index not in self._clients:
            self._clients[index] = Client(self.spec(index).rpc_url, timeout=CLIENT_TIMEOUT_S)
        return self._clients[index]

    def rpc_urls(self) -> list[str]:
        return [self.spec(i).rpc_url for i in self.indices]

    def validator_key(self, index: int) -> PrivateKey:
        return PrivateKey.derive(self.devnet.seed_phrase, "validator", index)

    def account_key(self, index: int) -> PrivateKey:
        """Genesis account `index`'s key (funded; account i owns validator i's stake)."""
        return PrivateKey.derive(self.devnet.seed_phrase, "account", index)

    def stop(self, index: int) -> int | None:
        """Stop node `index` gracefully (SIGINT, bounded escalation); its exit status."""
        self._paused.discard(index)
        code = self.devnet.stop(index)
        self.exit_codes[index] = code
        return code

    def kill(self, index: int) -> None:
        """SIGKILL node `index` and its sandbox workers: a crash, no clean shutdown."""
        self._paused.discard(index)
        proc = self.devnet.procs.get(index)
        self.devnet.kill(index)
        if proc is not None:
            self.exit_codes[index] = proc.poll()

    def restart(self, index: int, *, env: Mapping[str, str] | None = None,
                timeout: float = START_TIMEOUT_S) -> None:
        """(Re)start node `index` from its home and wait until it serves; a running node is stopped first."""
        if self.is_running(index):
            self.stop(index)
        self.devnet.start(index, extra_env={**self.env, **(env or {})})
        self.exit_codes.pop(index, None)
        self.wait_ready([index], timeout=timeout)

    def pause(self, index: int) -> None:
        """SIGSTOP the node and its workers: it goes silent while its connections stay open."""
        signal_group(self._proc(index), signal.SIGSTOP)
        self._paused.add(index)

    def resume(self, index: int) -> None:
        signal_group(self._proc(index), signal.SIGCONT)
        self._paused.discard(index)

    def add_node(self, *, validator: bool = False, start: bool = True, bootstrap: list[str] | None = None,
                 timeout: float = START_TIMEOUT_S) -> int:
        """A node beyond genesis (index n, n+1, ...) on free ports that dials the validators (or
        `bootstrap`). With `validator=True` its home holds `validator_key(index)`; it joins the set only once
        a stake transaction for that key lands."""
        index = max(self.indices) + 1
        peers = bootstrap if bootstrap is not None else [self.spec(i).p2p_addr for i in range(self.validators)]
        self.devnet.init_home(index, validator=validator, bootstrap=peers)
        self._extra.add(index)
        for attempt in range(1, BIND_ATTEMPTS + 1):
            if not start:
                break
            try:
                self.restart(index, timeout=timeout)
                break
            except NodeExited as exc:
                if not exc.bind_failure or attempt == BIND_ATTEMPTS:
                    raise
                self.devnet.ports.pop(index, None)  # another program took a port: new ones, same home
                self.devnet.init_home(index, validator=validator, bootstrap=peers)
                stale = self._clients.pop(index, None)
                if stale is not None:
                    stale.close()
        return index

    def route(self, dialer: int, peer: int, port: int | None) -> None:
        """Node `dialer` reaches node `peer` at 127.0.0.1:`port` (a proxy the test runs and can cut, e.g.
        `tests.adversary.blackhole.ProxyThread`) instead of at `peer`'s own p2p port; `port=None`: `dialer`
        does not dial `peer` at all (it only accepts `peer`'s dials). Call it before `start` (or restart
        `dialer`): it rewrites `dialer`'s bootstrap list, at start and whenever the network moves ports. A
        link that must only go through the proxy routes one end through it and the other end to None."""
        self._routes[(dialer, peer)] = port
        self._write_routes()

    def _write_routes(self) -> None:
        from node.config import load_config, write_config

        for dialer in sorted({d for d, _ in self._routes}):
            path = self.devnet.home(dialer) / "config.toml"
            if not path.exists():
                continue  # not prepared yet: `start` writes it
            cfg = load_config(path)
            entries = {addr.rsplit("/p2p/", 1)[-1]: addr for addr in cfg.p2p.bootstrap}
            for (d, peer), port in self._routes.items():
                if d != dialer:
                    continue
                peer_id = self.spec(peer).peer_id
                if port is None:
                    entries.pop(peer_id, None)
                else:
                    entries[peer_id] = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"
            write_config(path, cfg.replace(p2p=dataclasses.replace(cfg.p2p, bootstrap=tuple(entries.values()))))

    def _write_node_config(self) -> None:
        from node.config import config_from_dict, config_to_dict, load_config, write_config

        for index, keys in self._node_config.items():
            path = self.devnet.home(index) / "config.toml"
            doc = config_to_dict(load_config(path))
            for key, value in keys.items():
                if isinstance(value, Mapping):
                    doc[key] = {**doc[key], **value}
                else:
                    doc[key] = value
            write_config(path, config_from_dict(doc))

    def _proc(self, index: int) -> NodeProcess:
        proc = self.devnet.procs.get(index)
        if proc is None or proc.poll() is not None:
            raise NetworkError(f"node{index} is not running")
        return proc

    # ------------------------------------------------------------------------------------------ readiness

    def wait_ready(self, indices: Iterable[int], *, timeout: float = START_TIMEOUT_S) -> None:
        """Until each node's process is alive and its RPC answers with this chain's id, its own peer id and
        its p2p address among the addresses it listens on. A node that exits meanwhile raises NodeExited at
        once (with its log)."""
        pending = set(indices)
        seen: dict[int, str] = {}

        def check() -> bool:
            for index in sorted(pending):
                self._check_alive(index)
                try:
                    status = self.client(index).status()
                except RpcError as exc:
                    seen[index] = str(exc)
                    continue
                spec = self.spec(index)
                if (status.chain_id, status.node_id) != (self.chain_id, spec.peer_id):
                    seen[index] = (f"port answered as chain {status.chain_id!r} node {status.node_id}, "
                                   f"not {self.chain_id!r} node {spec.peer_id}")
                    continue
                if spec.p2p_addr not in status.listen_addrs:  # its RPC runs first; p2p may still fail to bind
                    seen[index] = f"RPC up, p2p not yet listening on {spec.p2p_addr} ({status.listen_addrs})"
                    continue
                pending.discard(index)
            return not pending

        wait_until(f"node(s) {sorted(pending)} to serve their RPC", check, timeout, poll=0.2,
                   detail=lambda: "\n".join(f"node{i}: {seen.get(i, 'no answer yet')}" for i in sorted(pending))
                   + "\n" + self.describe())

    def _check_alive(self, index: int) -> None:
        proc = self.devnet.procs.get(index)
        if proc is None:
            raise NetworkError(f"node{index} was never started\n{self.describe()}")
        code = proc.poll()
        if code is None:
            return
        tail = self.log_tail(index, LOG_LINES)
        bind = any(line.startswith("error: " + BIND_FAILURE) for line in tail.splitlines()[-3:])
        raise NodeExited(index, code, f"node{index} exited with status {code}\n{self.describe()}",
                         bind_failure=bind)

    # ------------------------------------------------------------------------------------------ the chain

    def height(self, index: int) -> int:
        return self.client(index).status().height

    def heights(self, indices: Iterable[int] | None = None) -> dict[int, int | None]:
        """Each node's committed height; None where it does not answer (stopped, paused, starting)."""
        out: dict[int, int | None] = {}
        for index in self.running if indices is None else indices:
            if index in self._paused or not self.is_running(index):
                out[index] = None
                continue
            try:
                out[index] = self.height(index)
            except RpcError:
                out[index] = None
        return out

    def wait_height(self, height: int, nodes: Iterable[int] | None = None, *, timeout: float = 60.0) -> None:
        """Until every node in `nodes` (default: every running, unpaused node) has committed `height`; a node
        that exits meanwhile fails at once."""
        targets = list(nodes) if nodes is not None else [i for i in self.running if i not in self._paused]

        def check() -> bool:
            for index in targets:
                self._check_alive(index)
            return all(self.height(i) >= height for i in targets)

        wait_until(f"node(s) {targets} at height {height}", check, timeout, detail=self.describe)

    def wait_until(self, what: str, check: Callable[[], T | None], timeout: float, *, poll: float = 0.2) -> T:
        """`waits.wait_until` whose failure message carries this network's state and logs."""
        return wait_until(what, check, timeout, poll=poll, detail=self.describe)

    # ------------------------------------------------------------------------------------------ logs

    def log_tail(self, index: int, lines: int = LOG_LINES) -> str:
        try:
            text = self.spec(index).log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self, lines: int = LOG_LINES) -> str:
        """Every node's process state, height and last log lines: what a failure message needs."""
        parts = []
        for index in self.indices:
            proc = self.devnet.procs.get(index)
            height: int | None = None
            try:
                where = self.spec(index).rpc_url
            except DevnetError:  # no ports yet: describe must never hide the failure it explains
                where = "no ports"
            if proc is None:
                state = f"not running (last exit status {self.exit_codes.get(index)})"
            elif proc.poll() is not None:
                state = f"exited with status {proc.poll()}"
            elif index in self._paused:
                state = f"pid {proc.pid} paused"
            else:
                state = f"pid {proc.pid}"
                try:
                    with Client(where, timeout=2.0) as quick:
                        height = quick.status().height
                except RpcError:
                    pass
            parts.append(f"--- node{index} ({where}): {state}, height {height}; "
                         f"last {lines} log lines:\n{self.log_tail(index, lines)}")
        return "\n".join(parts)


def live_networks() -> list[RealNet]:
    return list(_live)


@atexit.register
def _stop_leftovers() -> None:
    """Processes of a network nobody closed (an interrupted run) do not outlive the interpreter."""
    for net in list(_live):
        procs = list(net.devnet.procs.values())
        net.devnet.procs.clear()
        stop_processes(procs)
        _live.remove(net)



"""Cut links under transfer load on a real 4-validator devnet: one silent link, then a 2|2 partition, each
healed (docs/testing.md "Cut links and partitions", docs/security.md).

Validators {0, 1} and {2, 3} form the two sides. Each cross link (0-2, 0-3, 1-2, 1-3) goes only through a
`BlackholeProxy` the test controls: the lower index dials the higher through it, the higher does not dial
the lower (`RealNet.route`). A cut is silent (no reset, connections stay open) like a dead cable. One network
serves both tests, in file order; each leaves every link healed.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Amount
from node.client import Client, RpcError
from tests.adversary.blackhole import BlackholeProxy, ProxyThread
from tests.adversary.watch import (
    MAX_GAP_S,
    SLACK_S,
    assert_same_chain,
    is_dropped,
    max_commit_gap_s,
    penalties,
)
from tests.realnet import RealNet
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.e2e

VALIDATORS = 4
SIDES = ((0, 1), (2, 3))
CROSS = tuple(itertools.product(*SIDES))  # (0, 2), (0, 3), (1, 2), (1, 3)
SENDERS = 96  # per test: each test's senders start at nonce 0
PER_SENDER = 64  # the mempool's max_nonce_gap: a halted chain still takes every one of them
RATE = 200  # offered transfers per second
TICK_S = 0.1
FEE = 1000
GAS_LIMIT = 1000
CUT_S = 12.0  # past the stall detector (p2p peer_write_timeout_s, 10 s), so the dropped link is redialed
SETTLE_S = 2.0  # after a partition, for what was decided before it to land on both sides
HALT_S = 6.0  # a partitioned chain must not move for this long
LINK_TIMEOUT_S = 45.0  # dial back-off (up to 2 s) plus a dial (up to 5 s), on a loaded machine
# A healed split pays rounds at its first height: 10-46 s seen
# (docs/performance-latency.md, "After a partition heals").
RESUME_TIMEOUT_S = 120.0
COMMIT_TIMEOUT_S = 90.0


@dataclass
class Linked:
    net: RealNet
    proxies: ProxyThread
    links: dict[tuple[int, int], BlackholeProxy]


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Linked]:
    with ProxyThread() as proxies:
        net = RealNet(tmp_path_factory.mktemp("partition"), validators=VALIDATORS, block_time_ms=200,
                      accounts=VALIDATORS + 2 * SENDERS)
        links: dict[tuple[int, int], BlackholeProxy] = {}
        for a, b in CROSS:
            links[(a, b)] = proxies.add(functools.partial(p2p_port, net, b))
            net.route(a, b, links[(a, b)].port)
            net.route(b, a, None)
        with net:
            net.start()
            net.wait_height(2)
            yield Linked(net, proxies, links)


def p2p_port(net: RealNet, index: int) -> int:
    """Where a proxy forwards to, looked up per connection (the network may move ports while starting)."""
    return net.spec(index).p2p_port


# ---------------------------------------------------------------------------------------------- load


@dataclass
class TransferLoad:
    """Pre-signed transfers offered at RATE tx/s through `endpoints`, one thread per endpoint (sender s always
    through the same node, so its nonces arrive in order). A sender stops at its first refusal or unanswered
    call: an accepted transaction then never waits behind a nonce gap the driver made."""

    net: RealNet
    endpoints: tuple[int, ...]
    senders: list[PrivateKey]
    accepted: set[bytes] = field(default_factory=set)
    refused: dict[bytes, str] = field(default_factory=dict)
    unanswered: set[bytes] = field(default_factory=set)
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        sink = PrivateKey.derive("partition test sink", "account", 0).address
        chain_id = self.net.chain_id
        self._queues: dict[int, list[tuple[int, Transaction]]] = {i: [] for i in self.endpoints}
        for n in range(PER_SENDER):
            for s, key in enumerate(self.senders):
                tx = build_tx(key, Transfer(sink, Amount(1)), chain_id=chain_id, nonce=n, gas_limit=GAS_LIMIT,
                              fee=FEE)
                self._queues[self.endpoints[s % len(self.endpoints)]].append((s, tx))
        self._stopped: set[int] = set()
        self._began = self._ended = 0.0

    def start(self) -> TransferLoad:
        self._began = time.monotonic()
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"transfer-load-{i}", daemon=True)
                         for i in self.endpoints]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive(), "a load thread did not stop"
        self._ended = time.monotonic()

    def _run(self, index: int) -> None:
        queue = self._queues[index]
        per_tick = max(1, round(RATE * TICK_S / len(self.endpoints)))
        with Client(self.net.spec(index).rpc_url, timeout=10.0) as client:
            for tick in itertools.count():
                if self._stop.is_set() or not queue:
                    return
                batch, queue = queue[:per_tick], queue[per_tick:]
                with self.lock:
                    items = [(s, bytes(tx.hash), tx.encode().hex()) for s, tx in batch if s not in self._stopped]
                if items:
                    self._send(client, items)
                self._stop.wait(max(0.0, self._began + (tick + 1) * TICK_S - time.monotonic()))

    def _send(self, client: Client, items: list[tuple[int, bytes, str]]) -> None:
        try:
            answers = client.call("broadcast_txs", {"txs": [raw for _, _, raw in items], "mode": "sync"})
        except RpcError:
            answers = None
        with self.lock:
            self.sent += len(items)
            for k, (sender, tx_hash, _) in enumerate(items):
                if answers is None:
                    self.unanswered.add(tx_hash)
                    self._stopped.add(sender)
                elif answers[k].get("accepted"):
                    self.accepted.add(tx_hash)
                else:
                    self.refused[tx_hash] = str(answers[k].get("error") or "refused")
                    self._stopped.add(sender)

    def rate(self) -> float:
        """Transactions sent per second of sending."""
        return self.sent / max(self._ended - self._began, 1e-9)

    def snapshot(self) -> set[bytes]:
        with self.lock:
            return set(self.accepted)


def sender_keys(net: RealNet, test: int) -> list[PrivateKey]:
    """Genesis accounts 4.. are the load's; each test takes SENDERS of its own."""
    first = VALIDATORS + test * SENDERS
    return [net.account_key(i) for i in range(first, first + SENDERS)]


# ---------------------------------------------------------------------------------------------- chain


def committed_txs(net: RealNet, node: int, first: int, last: int) -> set[bytes]:
    client = net.client(node)
    return {bytes(tx.hash) for h in range(first, last + 1) for tx in client.block(h).block.txs}


def wait_all_committed(net: RealNet, load: TransferLoad, first: int) -> int:
    """Until every transaction the load had accepted is in a block node 0 committed; returns its height."""
    accepted = load.snapshot()
    seen: set[bytes] = set()
    scanned = first - 1

    def check() -> bool:
        nonlocal scanned
        top = net.height(0)
        if top > scanned:
            seen.update(committed_txs(net, 0, scanned + 1, top))
            scanned = top
        return accepted <= seen

    try:
        net.wait_until(f"the {len(accepted)} accepted transactions committed", check, COMMIT_TIMEOUT_S, poll=1.0)
    except AssertionError as exc:
        missing = accepted - seen
        raise AssertionError(f"{len(missing)} of {len(accepted)} accepted transactions not committed by height "
                             f"{scanned}, e.g. {sorted(h.hex() for h in missing)[:3]}\n{exc}") from None
    return scanned


def peer_counts(net: RealNet) -> dict[int, int]:
    return {i: net.client(i).status().peers for i in net.indices}


def remote_ports(pid: int) -> set[int]:
    """The remote ports of the established TCP connections process `pid` holds (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # ESTABLISHED
                ports.add(int(fields[2].split(":")[1], 16))
    return ports


def assert_sides_meet_only_through_proxies(linked: Linked, *, all_linked: bool = False) -> None:
    """No cross link runs around its proxy: neither end holds a connection to the other's p2p port; with
    `all_linked`, each link's dialer also holds its connection through its proxy."""
    net = linked.net
    ports = {i: remote_ports(net.pid(i)) for i in net.indices}
    around = [(a, b) for a, b in CROSS
              if net.spec(b).p2p_port in ports[a] or net.spec(a).p2p_port in ports[b]]
    assert not around, f"links {around} connected around their proxies"
    if all_linked:
        missing = [(a, b) for (a, b), proxy in linked.links.items() if proxy.port not in ports[a]]
        assert not missing, f"links {missing} not connected through their proxies"


def assert_no_honest_peer_penalized(net: RealNet, before: dict[int, float]) -> None:
    after = {i: penalties(net, i) for i in net.indices}
    assert after == before, f"honest peers penalized: penalties {before} -> {after}"
    for i, j in itertools.permutations(net.indices, 2):
        assert not is_dropped(net, i, net.spec(j).peer_id), f"node{i} disconnected or banned node{j} for its score"


# ---------------------------------------------------------------------------------------------- tests


def test_one_silent_link_cut_under_load_keeps_the_chain_committing_and_heals(linked: Linked) -> None:
    """Gossip between the cut link's ends goes through the other two validators: no stall, nothing lost,
    nobody penalized; once healed the two ends are connected again."""
    net, proxies, link = linked.net, linked.proxies, linked.links[(0, 2)]
    before_penalties = {i: penalties(net, i) for i in net.indices}
    first = net.height(0) + 1
    load = TransferLoad(net, tuple(net.indices), sender_keys(net, 0)).start()
    try:
        net.wait_height(first + 3, timeout=60)
        cut_at = net.height(0)
        proxies.cut(link)
        cut_began = time.monotonic()
        # The link really is dead: its ends' stall detectors drop it, and their redials (through the proxy, the
        # only way between them) hang until the heal.
        net.wait_until("node0 and node2 to drop their cut link",
                       lambda: (counts := peer_counts(net))[0] == 2 and counts[2] == 2, LINK_TIMEOUT_S)
        while time.monotonic() - cut_began < CUT_S:
            counts = peer_counts(net)
            assert counts[0] == counts[2] == 2, f"the cut link came back around the proxy: peers {counts}"
            time.sleep(0.5)
        assert_sides_meet_only_through_proxies(linked)
        during = min(h for h in net.heights().values() if h is not None)
        assert during >= cut_at + 5, f"the chain did not keep committing while one link was cut: {cut_at} -> {during}"
        gap = max_commit_gap_s(net, 0, cut_at, during)
        assert gap <= MAX_GAP_S + SLACK_S, f"a {gap:.1f} s gap between blocks {cut_at}..{during} with one link cut"
        moved = link.bytes_moved
        proxies.heal(link)
        net.wait_until("node0 and node2 connected again through the healed link",
                       lambda: all(n == VALIDATORS - 1 for n in peer_counts(net).values())
                       and link.bytes_moved > moved, LINK_TIMEOUT_S)
    finally:
        load.stop()
        proxies.heal(link)
    assert load.accepted, f"the load got nothing accepted: {list(load.refused.values())[:3]}"
    top = wait_all_committed(net, load, first)
    net.wait_height(top, timeout=60)
    assert_same_chain(net, net.indices, first, top)
    assert_no_honest_peer_penalized(net, before_penalties)
    assert_sides_meet_only_through_proxies(linked, all_linked=True)
    print(f"\none link cut: heights {cut_at}..{during} committed during the {CUT_S:g} s cut, longest gap between "
          f"blocks {gap:.1f} s; {load.sent} sent ({load.rate():.0f} tx/s), {len(load.accepted)} accepted and "
          f"committed, {len(load.refused)} refused, {len(load.unanswered)} unanswered")


def test_a_2_2_partition_halts_without_forking_and_resumes_after_heal_losing_nothing(linked: Linked) -> None:
    """Neither side holds 2/3 of the power: no side decides (no fork), no process exits, and after the heal
    the chain resumes, all four agree on every block, and every transaction accepted on either side during
    the partition is committed (or was refused with a reason, never silently dropped)."""
    net, proxies = linked.net, linked.proxies
    cross = list(linked.links.values())
    before_penalties = {i: penalties(net, i) for i in net.indices}
    first = net.height(0) + 1
    load = TransferLoad(net, tuple(net.indices), sender_keys(net, 1)).start()
    try:
        net.wait_height(first + 2, timeout=60)
        assert_sides_meet_only_through_proxies(linked, all_linked=True)
        proxies.cut(*cross)
        time.sleep(SETTLE_S)
        # A height decided before the cut may still reach a lagging node of either side; nothing newer may.
        decided = max(net.height(i) for i in net.indices)
        accepted_at_cut = len(load.snapshot())
        deadline = time.monotonic() + HALT_S
        while time.monotonic() < deadline:  # the halt: nobody decides, and every process stays up
            now = {i: net.height(i) for i in net.indices}
            assert max(now.values()) == decided, f"a side decided without 2/3 of the power: {decided} -> {now}"
            time.sleep(0.5)
        frozen = {i: net.height(i) for i in net.indices}
        assert_sides_meet_only_through_proxies(linked)
        assert min(frozen.values()) >= decided - 1, f"the sides drifted apart: {frozen}"
        for h in range(first, decided + 1):  # no fork: each height has one block, wherever it is known
            assert_same_chain(net, [i for i in net.indices if frozen[i] >= h], h, h)
        assert len(load.snapshot()) > accepted_at_cut, "no transaction was accepted during the partition"
        proxies.heal(*cross)
        healed = time.monotonic()
        relinked_s: float | None = None  # for the report: links dropped during the cut come back this late

        def resumed() -> bool:
            nonlocal relinked_s
            if relinked_s is None and all(n == VALIDATORS - 1 for n in peer_counts(net).values()):
                relinked_s = time.monotonic() - healed
            return all(net.height(i) >= decided + 3 for i in net.indices)

        net.wait_until(f"all four past height {decided + 3} after the heal", resumed, RESUME_TIMEOUT_S, poll=0.25)
        resumed_s = time.monotonic() - healed
    finally:
        load.stop()
        proxies.heal(*cross)
    top = wait_all_committed(net, load, first)
    net.wait_height(top, timeout=60)
    assert_same_chain(net, net.indices, first, top)
    assert_no_honest_peer_penalized(net, before_penalties)
    assert not load.unanswered, f"{len(load.unanswered)} broadcasts went unanswered"
    for error in load.refused.values():  # refused, not lost: the sender was told why
        assert error and error != "refused", f"a transaction refused without a reason: {error!r}"
    print(f"\n2|2 partition: halted at {decided} (heights {frozen}) for {HALT_S:g} s after a {SETTLE_S:g} s "
          f"settle, resumed {resumed_s:.1f} s after the heal (all links up at "
          f"{'-' if relinked_s is None else f'{relinked_s:.1f}'} s); {load.sent} sent ({load.rate():.0f} tx/s), "
          f"{len(load.accepted)} accepted and committed, {len(load.refused)} refused "
          f"({sorted(set(load.refused.values()))[:3]})")

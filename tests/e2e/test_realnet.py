"""The real-network harness itself (tests/realnet): it survives a port taken by another program, pauses and
resumes a validator, adds a non-validator node, reports node logs on failure, and leaves no process behind.
One network serves the module; the tests run in file order and the last one closes it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from node.client import Client, NodeUnreachable
from node.devnet import free_ports, pid_alive
from tests.realnet import RealNet, report

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def taken() -> dict[str, int]:
    return {}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, taken: dict[str, int]) -> Iterator[RealNet]:
    """A network whose node 1 finds its p2p port held by another program at the first start."""
    with RealNet(tmp_path_factory.mktemp("realnet"), validators=4, block_time_ms=200) as net:
        net.devnet.prepare()
        taken["port"] = net.spec(1).p2p_port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
            holder.bind(("127.0.0.1", taken["port"]))
            holder.listen()
            net.start()
        yield net


def test_start_moves_to_free_ports_when_another_program_holds_one(net: RealNet, taken: dict[str, int]) -> None:
    assert net.spec(1).p2p_port != taken["port"]
    assert len({p for i in net.indices for p in (net.spec(i).p2p_port, net.spec(i).rpc_port)}) == 8
    net.wait_height(2, timeout=90)
    for i in net.indices:
        status = net.client(i).status()
        assert (status.chain_id, status.node_id) == (net.chain_id, net.spec(i).peer_id)
    net.wait_until("every node connected to the 3 others",
                   lambda: all(net.client(i).status().peers >= 3 for i in net.indices), 60)
    # The node that met the taken port said so in its log before the network moved.
    assert f"error: cannot listen on /ip4/127.0.0.1/tcp/{taken['port']}" in net.spec(1).log_path.read_text()


def test_a_paused_validator_is_silent_then_catches_up(net: RealNet) -> None:
    net.pause(3)
    with Client(net.spec(3).rpc_url, timeout=1.0) as quick, pytest.raises(NodeUnreachable):
        quick.status()
    start = net.height(0)
    net.wait_height(start + 3, [0, 1, 2], timeout=60)
    net.resume(3)
    net.wait_height(net.height(0), [3], timeout=90)


def test_an_extra_non_validator_node_syncs_even_if_its_first_port_was_taken(net: RealNet) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        net.devnet.ports[4] = (held, free_ports(1)[0])  # as if another program took the port it was given
        index = net.add_node()
    assert index == 4 and net.indices == [0, 1, 2, 3, 4]
    assert net.spec(4).p2p_port != held
    assert f"error: cannot listen on /ip4/127.0.0.1/tcp/{held}" in net.spec(4).log_path.read_text()
    target = net.height(0)
    net.wait_height(target, [index], timeout=120)
    status = net.client(index).status()
    assert status.is_validator is False
    assert net.client(index).block(target).block.id == net.client(0).block(target).block.id


def test_a_failed_report_carries_every_nodes_state_and_log(net: RealNet) -> None:
    report.begin()
    failed = pytest.TestReport("t::x", ("t", 0, "x"), {}, "failed", None, "call")
    report.attach(failed)
    (title, text), = failed.sections
    assert str(net.devnet.root) in title
    for i in net.indices:
        assert f"--- node{i} ({net.spec(i).rpc_url}): pid {net.pid(i)}" in text
    assert "committed block" in text
    passed = pytest.TestReport("t::y", ("t", 0, "y"), {}, "passed", None, "call")
    report.attach(passed)
    assert passed.sections == []


def test_close_stops_every_process_even_a_paused_one(net: RealNet) -> None:
    pids = [net.pid(i) for i in net.indices]
    net.pause(2)
    net.close()
    assert not any(pid_alive(pid) for pid in pids)
    assert set(net.exit_codes) == set(net.indices) and None not in net.exit_codes.values()
    assert net.running == []

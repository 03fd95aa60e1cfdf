"""`inferchain devnet up|status|down`: a local multi-validator chain (node.devnet) from one terminal."""

from __future__ import annotations

import datetime
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from node.cli.common import F, echo_json, warn
from node.client import Client, RpcError
from node.devnet import (
    DEFAULT_BASE_PORT,
    DEFAULT_VALIDATORS,
    Devnet,
    DevnetError,
    account_keys,
    genesis_accounts,
)

STATUS_EVERY_S = 1.0


def dir_option(fn: F) -> F:
    return click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Devnet directory (default: .devnet in the repository).")(fn)


@click.group()
def devnet() -> None:
    """A local devnet of validator processes on 127.0.0.1 (keys are publicly known)."""


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@devnet.command("up")
@dir_option
@click.option("--validators", "-n", type=click.IntRange(1, 64), default=DEFAULT_VALIDATORS, show_default=True,
              help="Number of validators (4 uses the repository's genesis.json; others run the genesis tool).")
@click.option("--block-time", type=click.FloatRange(min=0.05, max=600), default=None,
              help="Seconds from one block to the next height's proposal (sets timeout_commit and "
                   "next_block_delay on every node).")
@click.option("--base-port", type=click.IntRange(0, 65000), default=DEFAULT_BASE_PORT, show_default=True,
              help="Node i listens for p2p on base+2i and RPC on base+2i+1; 0 takes free ports from the OS "
                   "(recorded in DIR/devnet.json). A resumed devnet keeps the ports it was created with.")
@click.option("--reset", is_flag=True, help="Delete the devnet's state and start a new chain.")
@click.option("--detach", is_flag=True, help="Start the nodes and return; stop them with `inferchain devnet down`.")
def up(root: Path | None, validators: int, block_time: float | None, base_port: int, reset: bool,
       detach: bool) -> None:
    """Start the devnet; prints accounts, RPC URLs and a live status line. Ctrl-C stops every node."""
    net = Devnet(root, validators=validators, base_port=base_port,
                 block_time_ms=int(block_time * 1000) if block_time is not None else None)
    alive = net.running_pids()
    if alive:
        raise DevnetError(f"a devnet is already running from {net.root} ({', '.join(alive)}); "
                          "stop it with `inferchain devnet down`")
    if reset:
        net.reset()
        click.echo(f"reset: removed {net.root}")
    created = net.prepare()
    click.echo(f"{'created' if created else 'resuming'} devnet in {net.root} ({net.validators} validators)")
    _print_accounts(net)
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        net.start_all()
        click.echo("\nRPC endpoints:")
        for spec in net.specs():
            click.echo(f"  node{spec.index}  {spec.rpc_url}   (log: {spec.log_path})")
        if detach:
            doc = net.read_pid_file() or {}
            doc["supervisor"] = None
            (net.root / "devnet.pid").write_text(__import__("json").dumps(doc, indent=2) + "\n")
            net.procs.clear()  # they keep running; `devnet down` stops them
            click.echo("\ndetached; stop with: inferchain devnet down")
            return
        click.echo("\nCtrl-C stops every node (state is kept; `--reset` starts over).\n")
        _watch(net)
    except _Stop:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if net.procs:
            click.echo("\nstopping nodes…", err=True)
            running = sum(p.poll() is None for p in net.procs.values())
            exited = len(net.procs) - running
            net.stop_all()
            gone = f" ({exited} had already exited: see their logs)" if exited else ""
            click.echo(f"stopped {running} running node(s){gone}", err=True)


def _print_accounts(net: Devnet) -> None:
    accounts = genesis_accounts(net.genesis_path)
    keys = {str(k.address): k for k in account_keys(net.seed_phrase, max(len(accounts), net.validators))}
    warn("WARNING: these keys derive from a PUBLISHED seed phrase. Anyone can spend from them. "
         "Never use them for anything of value.")
    click.echo("\nprefunded accounts (import one with: inferchain keys import NAME --seed SEED):")
    for acc in accounts:
        key = keys.get(acc["address"])
        seed = key.seed.hex() if key is not None else "(not derived from the devnet seed)"
        click.echo(f"  {acc.get('name', ''):<10} {acc['address']}  balance={acc['balance']}  seed={seed}")


def _status_line(net: Devnet, clients: list[Client]) -> str:
    heights: list[int | None] = []
    rounds: list[int] = []
    peers: list[int] = []
    times: list[int] = []
    for client in clients:
        try:
            s = client.status()
        except RpcError:
            heights.append(None)
            continue
        heights.append(s.height)
        rounds.append(s.round)
        peers.append(s.peers)
        times.append(s.block_time)
    up_count = sum(h is not None for h in heights)
    known = [h for h in heights if h is not None]
    if not known:
        return f"waiting for nodes to answer… (0/{len(clients)} up)"
    age = ""
    if times and max(known) > 0:
        seconds = max(0.0, time.time() - max(times) / 1000)
        stamp = datetime.datetime.fromtimestamp(max(times) / 1000).strftime("%H:%M:%S")
        age = f"  last block {stamp} ({seconds:.1f}s ago)"
    return (f"height {max(known)}  round {max(rounds)}  peers {min(peers)}-{max(peers)}  "
            f"nodes up {up_count}/{len(clients)}{age}")


def _watch(net: Devnet) -> None:
    clients = [Client(spec.rpc_url, timeout=0.8) for spec in net.specs()]
    tty = sys.stdout.isatty()
    reported: set[int] = set()
    last_print = 0.0
    try:
        while True:
            for index, proc in list(net.procs.items()):
                code = proc.poll()
                if code is not None and index not in reported:
                    reported.add(index)
                    click.echo(f"\nnode{index} exited with status {code}; see {net.spec(index).log_path}", err=True)
            if reported and len(reported) == len(net.procs):
                raise DevnetError("every node exited; see the node logs under " + str(net.root))
            line = _status_line(net, clients)
            now = time.monotonic()
            if tty:
                click.echo("\r\033[K" + line, nl=False)
            elif now - last_print >= 5:
                click.echo(line)
                last_print = now
            time.sleep(STATUS_EVERY_S)
    finally:
        for c in clients:
            c.close()


@devnet.command("status")
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(root: Path | None, as_json: bool) -> None:
    """Processes and chain status of a devnet started elsewhere."""
    net = Devnet.open(root)
    alive = net.running_pids()
    rows = []
    for spec in net.specs():
        row: dict[str, object] = {"node": spec.index, "rpc": spec.rpc_url, "p2p": spec.p2p_addr,
                                  "pid": alive.get(f"node{spec.index}")}
        try:
            with Client(spec.rpc_url, timeout=1.0) as client:
                s = client.status()
            row.update(height=s.height, round=s.round, peers=s.peers, block_id=s.block_id, catching_up=s.catching_up)
        except RpcError as err:
            row.update(error=str(err))
        rows.append(row)
    if as_json:
        echo_json({"dir": str(net.root), "validators": net.validators, "running": bool(alive), "nodes": rows})
        return
    click.echo(f"devnet in {net.root}: {net.validators} validators, "
               f"{'running' if alive else 'not running'}")
    for row in rows:
        if "error" in row:
            state = "not running" if row["pid"] is None else f"pid {row['pid']}, not answering"
            click.echo(f"  node{row['node']}  {row['rpc']}  down ({state})")
        else:
            click.echo(f"  node{row['node']}  {row['rpc']}  pid {row['pid']}  height={row['height']} "
                       f"round={row['round']} peers={row['peers']}{'  catching up' if row['catching_up'] else ''}")
        click.echo(f"         p2p {row['p2p']}")


@devnet.command("down")
@dir_option
def down(root: Path | None) -> None:
    """Stop a running devnet (from its pid file); its state is kept."""
    net = Devnet(root)
    if not net.running_pids():
        net.remove_pid_file()
        click.echo(f"no devnet running from {net.root}")
        return
    stopped = net.down()
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing left to stop'}")

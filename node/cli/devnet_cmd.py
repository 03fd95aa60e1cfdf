"""`inferchain devnet up|status|down|logs|fund|snapshot|restore|snapshots`: a local multi-validator chain
(node.devnet) from one terminal."""

from __future__ import annotations

import datetime
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from core.errors import DecodeError
from core.keys import PrivateKey
from core.units import DEFAULT_TOKEN, Token, format_amount
from node.cli.common import AMOUNT, F, echo_json, emit, json_option, resolve_amount, warn
from node.devnet import (
    DEFAULT_BASE_PORT,
    DEFAULT_VALIDATORS,
    Devnet,
    DevnetError,
    account_keys,
    genesis_accounts,
)

if TYPE_CHECKING:  # the RPC client (httpx) is imported by the commands that talk to a node, not by `status`
    from node.client import Client

STATUS_EVERY_S = 1.0
STATUS_LOG_EVERY_S = 5.0  # not a terminal: a status line at least this often
DEFAULT_IDLE_BLOCK_TIME_S = 5.0  # an idle devnet: one block (one PoI challenge) per 5 s instead of 5 per second


def dir_option(fn: F) -> F:
    return click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Devnet directory (default: .devnet in the repository).")(fn)


@click.group()
def devnet() -> None:
    """A local devnet of validator processes on 127.0.0.1 (keys are publicly known)."""


def _register_snapshot_commands() -> None:
    from node.cli.devnet_snapshot_cmd import restore, snapshot, snapshots

    for command in (snapshot, restore, snapshots):
        devnet.add_command(command)


_register_snapshot_commands()


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
@click.option("--idle-block-time", type=click.FloatRange(min=0.5, max=3600), default=None,
              help=f"With no transaction waiting, one block per this many seconds; the first transaction brings "
                   f"the normal pace back (default: {DEFAULT_IDLE_BLOCK_TIME_S:g} s, none with --block-time).")
@click.option("--base-port", type=click.IntRange(0, 65000), default=DEFAULT_BASE_PORT, show_default=True,
              help="Node i listens for p2p on base+2i and RPC on base+2i+1; 0 takes free ports from the OS "
                   "(recorded in DIR/devnet.json). A resumed devnet keeps the ports it was created with.")
@click.option("--reset", is_flag=True, help="Delete the devnet's state and start a new chain.")
@click.option("--from-genesis", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Start a new devnet from a state exported with `inferchain export` (its accounts, models and "
                   "stakes), with this devnet's validators in place of the exported ones.")
@click.option("--detach", is_flag=True, help="Start the nodes and return; stop them with `inferchain devnet down`.")
def up(root: Path | None, validators: int, block_time: float | None, idle_block_time: float | None, base_port: int,
       reset: bool, from_genesis: Path | None, detach: bool) -> None:
    """Start the devnet; prints accounts, RPC URLs and a live status line. Ctrl-C stops every node."""
    if idle_block_time is None and block_time is None:
        idle_block_time = DEFAULT_IDLE_BLOCK_TIME_S
    net = Devnet(root, validators=validators, base_port=base_port,
                 block_time_ms=int(block_time * 1000) if block_time is not None else None,
                 idle_block_time_ms=int(idle_block_time * 1000) if idle_block_time is not None else None,
                 from_genesis=from_genesis)
    alive = net.running_pids()
    if alive:
        raise DevnetError(f"a devnet is already running from {net.root} ({', '.join(alive)}); "
                          "stop it with `inferchain devnet down`")
    if reset:
        net.reset()
        click.echo(f"reset: removed {net.root}")
    created = net.prepare()
    click.echo(f"{'created' if created else 'resuming'} devnet in {net.root} ({net.validators} validators)")
    token = _print_chain(net)
    note = _genesis_doc(net).get("exported")
    if isinstance(note, dict):
        click.echo(f"forked from {note.get('chain_id')} at height {note.get('height')}: its accounts, models and "
                   "stakes, with this devnet's validators")
    if net.idle_block_time_ms:
        click.echo(f"idle pace: one block per {net.idle_block_time_ms / 1000:g} s while no transaction waits "
                   "(--idle-block-time)")
    _print_accounts(net, token)
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # In the foreground the nodes are forked from this process once it has imported the node (faster start);
        # detached, each is its own `node run` process and this command returns without loading the node.
        net.start_all(fork=not detach)
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


def _genesis_doc(net: Devnet) -> dict[str, object]:
    import json

    try:
        doc = json.loads(net.genesis_path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def genesis_token(doc: dict[str, object]) -> Token:
    item = doc.get("token")
    if not isinstance(item, dict):
        return DEFAULT_TOKEN
    try:
        return Token.from_obj([item.get("display"), item.get("base"), item.get("decimals")])
    except (TypeError, ValueError, DecodeError):
        return DEFAULT_TOKEN


def _print_chain(net: Devnet) -> Token:
    """The banner's chain line: chain id, the token's units and the minimum gas price."""
    doc = _genesis_doc(net)
    token = genesis_token(doc)
    vm = doc.get("vm")
    price = vm.get("min_gas_price") if isinstance(vm, dict) else None
    click.echo(f"chain id {doc.get('chain_id', '?')}   token {token.display} = 10^{token.decimals} {token.base}   "
               f"min gas price {price if price is not None else '?'} {token.base}/gas")
    return token


def _print_accounts(net: Devnet, token: Token) -> None:
    accounts = genesis_accounts(net.genesis_path)
    keys = {str(k.address): k for k in account_keys(net.seed_phrase, max(len(accounts), net.validators))}
    warn("WARNING: these keys derive from a PUBLISHED seed phrase. Anyone can spend from them. "
         "Never use them for anything of value.")
    click.echo("\nprefunded accounts (import one with: inferchain keys import NAME --seed SEED):")
    for acc in accounts:
        key = keys.get(acc["address"])
        seed = key.seed.hex() if key is not None else "(not derived from the devnet seed)"
        balance = format_amount(int(acc["balance"]), token).replace(" ", "")
        click.echo(f"  {acc.get('name', ''):<10} {acc['address']}  balance={balance}  seed={seed}")


def _status_line(net: Devnet, clients: list[Client]) -> tuple[str, tuple[int, bool]]:
    """The live status line, and its phase: how many nodes answer and whether any block is final yet."""
    from node.client import RpcError

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
        return f"waiting for nodes to answer… (0/{len(clients)} up)", (0, False)
    age = ""
    if times and max(known) > 0:
        seconds = max(0.0, time.time() - max(times) / 1000)
        stamp = datetime.datetime.fromtimestamp(max(times) / 1000).strftime("%H:%M:%S")
        age = f"  last block {stamp} ({seconds:.1f}s ago)"
    return (f"height {max(known)}  round {max(rounds)}  peers {min(peers)}-{max(peers)}  "
            f"nodes up {up_count}/{len(clients)}{age}"), (up_count, max(known) > 0)


def _watch(net: Devnet) -> None:
    """Poll the nodes until a signal stops us. On a terminal the status line is redrawn in place; into a
    file or pipe a line is written whenever the phase changes (a node comes up or goes down, the first block
    is final) and every STATUS_LOG_EVERY_S otherwise, so a log shows that the devnet came up however fast."""
    from node.client import Client

    clients = [Client(spec.rpc_url, timeout=0.8) for spec in net.specs()]
    tty = sys.stdout.isatty()
    reported: set[int] = set()
    last_print = 0.0
    last_phase: tuple[int, bool] | None = None
    try:
        while True:
            for index, proc in list(net.procs.items()):
                code = proc.poll()
                if code is not None and index not in reported:
                    reported.add(index)
                    click.echo(f"\nnode{index} exited with status {code}; see {net.spec(index).log_path}", err=True)
            if reported and len(reported) == len(net.procs):
                raise DevnetError("every node exited; see the node logs under " + str(net.root))
            line, phase = _status_line(net, clients)
            now = time.monotonic()
            if tty:
                click.echo("\r\033[K" + line, nl=False)
            elif phase != last_phase or now - last_print >= STATUS_LOG_EVERY_S:
                click.echo(line)
                last_print = now
                last_phase = phase
            time.sleep(STATUS_EVERY_S)
    finally:
        for c in clients:
            c.close()


@devnet.command("status")
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(root: Path | None, as_json: bool) -> None:
    """Processes and chain status of a devnet started elsewhere."""
    from node.devnet_status import node_rows

    net = Devnet.open(root)
    rows = node_rows(net)
    alive = net.running_pids()
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


@devnet.command("logs")
@dir_option
@click.option("--node", "node_index", type=click.IntRange(min=0), default=None, help="Only node I's log.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
def logs(root: Path | None, node_index: int | None, follow: bool) -> None:
    """The nodes' logs interleaved in time order, each line prefixed with its node."""
    from node.devnet_logs import follow as follow_logs
    from node.devnet_logs import merged

    net = Devnet.open(root)
    indices = range(net.validators) if node_index is None else [node_index]
    if node_index is not None and node_index >= net.validators:
        raise DevnetError(f"--node {node_index}: the devnet has nodes 0 to {net.validators - 1}")
    files = {f"node{i}": net.spec(i).log_path for i in indices}
    for line in merged(files):
        click.echo(line)
    if follow:
        try:
            follow_logs(files, click.echo, stop=lambda: False)
        except KeyboardInterrupt:
            return


@devnet.command("fund")
@click.argument("address")
@click.argument("amount", type=AMOUNT)
@dir_option
@click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=30.0, show_default=True,
              help="Seconds to wait for the block.")
@json_option
def fund(address: str, amount: object, root: Path | None, timeout: float, as_json: bool) -> None:
    """Send AMOUNT (e.g. 100ifc) to ADDRESS from the devnet's prefunded accounts (a faucet)."""
    from core.address import parse_address
    from core.types import Amount
    from core.units import AmountText
    from node.cli.chainctx import chain_context
    from node.cli.tx_cmd import submit
    from node.client import Client
    from vm.txs import Transfer, build_tx

    assert isinstance(amount, AmountText)
    try:
        recipient = parse_address(address)
    except ValueError as exc:
        raise DevnetError(f"ADDRESS: {exc}") from None
    net = Devnet.open(root)
    with Client(net.spec(0).rpc_url, timeout=max(timeout + 5, 10)) as client:
        probe = chain_context(client, account_keys(net.seed_phrase, 1)[0], None)
        value = resolve_amount(amount, probe.token, minimum=1)
        funder = _richest_account(net, client, value)
        ctx = chain_context(client, funder, None)
        gas = ctx.gas("gas_transfer", None)
        signed = build_tx(funder, Transfer(recipient, Amount(value)), chain_id=ctx.chain_id, nonce=ctx.nonce,
                          gas_limit=gas, fee=ctx.fee(gas, None))
        result = submit(client, signed, no_wait=False, timeout=timeout)
    emit({"to": str(recipient), "amount": value, "from": str(funder.address), "hash": result.hash.hex(),
          "height": result.height}, as_json, shown={"amount": format_amount(value, ctx.token)})


def _richest_account(net: Devnet, client: Client, value: int) -> PrivateKey:
    """A prefunded account that can pay `value`: the richest of those that own no validator, else the richest."""
    accounts = genesis_accounts(net.genesis_path)
    keys = account_keys(net.seed_phrase, max(len(accounts), net.validators))
    able = sorted((i >= net.validators, balance, i) for i, k in enumerate(keys)
                  if (balance := client.account(k.address).balance) >= value)
    if not able:
        raise DevnetError(f"no prefunded account holds {value} base units")
    return keys[able[-1][2]]

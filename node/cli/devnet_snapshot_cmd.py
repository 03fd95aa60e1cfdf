"""`inferchain devnet snapshot NAME | restore NAME | snapshots`: whole-devnet copies (node.devnet_snapshot)."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from node.cli.common import echo_json, emit, json_option
from node.devnet import Devnet
from node.devnet_snapshot import list_snapshots, restore_snapshot, take_snapshot


def _height(net: Devnet) -> int | None:
    # Imported here: `devnet status` registers these commands and needs no RPC client.
    from node.client import Client, RpcError

    try:
        with Client(net.spec(0).rpc_url, timeout=2.0) as client:
            return client.status().height
    except RpcError:
        return None


@click.command("snapshot")
@click.argument("name")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Devnet directory (default: .devnet in the repository).")
@json_option
def snapshot(name: str, root: Path | None, as_json: bool) -> None:
    """Copy every node home of the devnet as snapshot NAME (a running devnet is paused for the copy)."""
    net = Devnet.open(root)
    info = take_snapshot(net, name, height=_height(net) if net.running_pids() else None)
    emit({"snapshot": name, "height": info["height"], "nodes": len(info["nodes"]),
          "devnet": "paused for the copy, running again" if info["running"] else "stopped"}, as_json)


@click.command("restore")
@click.argument("name")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Devnet directory (default: .devnet in the repository).")
@json_option
def restore(name: str, root: Path | None, as_json: bool) -> None:
    """Replace the stopped devnet's state with snapshot NAME; `devnet up` then resumes from it."""
    net = Devnet(root)
    info = restore_snapshot(net, name)
    emit({"restored": name, "height": info.get("height"), "next": "inferchain devnet up"}, as_json)


@click.command("snapshots")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Devnet directory (default: .devnet in the repository).")
@json_option
def snapshots(root: Path | None, as_json: bool) -> None:
    """List the devnet's snapshots."""
    rows = list_snapshots(Devnet(root))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no snapshots (take one with `inferchain devnet snapshot NAME`)")
    for row in rows:
        taken = datetime.datetime.fromtimestamp(int(row.get("taken", 0))).strftime("%Y-%m-%d %H:%M:%S")
        height = row.get("height")
        click.echo(f"{row['name']:<20} taken {taken}  height {height if height is not None else '-'}  {row['path']}")

"""`inferchain node run`: run a node from its home, with its RPC server and metrics, until Ctrl-C."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from core.errors import InferchainError
from core.keyfile import is_encrypted
from node.cli.common import home_option, read_passphrase


@click.group()
def node() -> None:
    """Run a node."""


@node.command("run")
@home_option
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Override the config's log level.")
@click.option("--upgrade", "upgrade_names", multiple=True, metavar="NAME", envvar="INFERCHAIN_UPGRADE",
              help="Run the scheduled software upgrade NAME, one that needs no state migration (a node that "
                   "lacks it stops at the upgrade height; docs/governance.md).")
def run(home: Path, log_level: str | None, upgrade_names: tuple[str, ...]) -> None:
    """Run the node in HOME (created by `inferchain init`): p2p, consensus, RPC on the config's address."""
    import trio

    from node.cli.runner import run_node, start_sandbox_pool
    from node.home import NodeHome
    from vm import upgrades

    for name in upgrade_names:
        if name not in upgrades.REGISTRY:
            upgrades.register(upgrades.Upgrade(name, upgrades.no_migration))

    node_home = NodeHome.at(home)
    node_home.check()
    config = node_home.load_config()
    logging.basicConfig(level=(log_level or config.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    passphrase = None
    if node_home.validator_key_path.exists() and is_encrypted(node_home.validator_key_path):
        passphrase = read_passphrase("Passphrase of the validator key")
    # A validator needs its sandbox worker for the first block's PoI challenge: start it before the node's own
    # imports (node.service), which it overlaps. A full node starts one when a block first needs it.
    pool = start_sandbox_pool(config.worker_memory_bytes) if config.validator else None
    try:
        trio.run(run_node, node_home, passphrase, pool)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        # A user-facing cause (bad config, corrupt store, diverged chain) deserves its one line, not a tree.
        causes = group.exceptions
        while len(causes) == 1 and isinstance(causes[0], BaseExceptionGroup):
            causes = causes[0].exceptions
        if len(causes) == 1 and isinstance(causes[0], InferchainError | OSError):
            raise causes[0] from None
        raise
    finally:
        if pool is not None:
            pool.close()  # the node closes it when it ran; not when it failed before it held the pool
    click.echo("node stopped", err=True)

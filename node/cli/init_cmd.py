"""`inferchain init`: create a node home (node key, validator key, config, genesis)."""

from __future__ import annotations

from pathlib import Path

import click

from core.errors import ConfigError
from core.keyfile import load_key
from node.cli.common import (
    PASSPHRASE_ENV,
    CliError,
    default_genesis,
    echo_pairs,
    home_option,
    read_passphrase,
)
from node.config import NodeConfig, P2PSection, RPCSection
from node.home import init_home


@click.command()
@home_option
@click.option("--genesis", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Genesis file to copy into the home (default: the repository's genesis.json, the devnet).")
@click.option("--moniker", default="inferchain-node", show_default=True, help="A name for this node.")
@click.option("--p2p", "p2p_addr", default="/ip4/127.0.0.1/tcp/26656", show_default=True,
              help="libp2p listen multiaddr.")
@click.option("--rpc", "rpc_addr", default="127.0.0.1:26657", show_default=True, help="RPC listen host:port.")
@click.option("--bootstrap", multiple=True, help="Peer to keep connected (/ip4/…/tcp/…/p2p/<id>); repeatable.")
@click.option("--validator-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Use this existing key file as the validator key instead of generating one.")
@click.option("--no-validator-key", is_flag=True, help="Create a full node without a validator key.")
@click.option("--encrypt", is_flag=True,
              help=f"Seal the new validator key with a passphrase (prompted, or ${PASSPHRASE_ENV}).")
@click.option("--force", is_flag=True, help="Rewrite config and genesis of an existing home (keys are kept).")
def init(home: Path, genesis: Path | None, moniker: str, p2p_addr: str, rpc_addr: str, bootstrap: tuple[str, ...],
         validator_key: Path | None, no_validator_key: bool, encrypt: bool, force: bool) -> None:
    """Create a node home: node key, validator key, config.toml and a copy of genesis."""
    from node.home import NodeHome

    if NodeHome.at(home).exists() and not force:
        raise CliError(f"{NodeHome.at(home).root}: already initialised (use --force to rewrite its config and "
                       "genesis; keys are kept)")
    genesis = genesis or default_genesis()
    if not genesis.exists():
        raise CliError(f"{genesis}: genesis file not found (pass --genesis FILE)")
    if validator_key is not None and no_validator_key:
        raise CliError("--validator-key and --no-validator-key exclude each other")
    key = None
    if validator_key is not None:
        key = load_key(validator_key, read_passphrase("Passphrase of the validator key")
                       if _encrypted(validator_key) else None)
    passphrase = read_passphrase("Passphrase for the new validator key", confirm=True) if encrypt else None
    try:
        config = NodeConfig(moniker=moniker, p2p=P2PSection(listen_addrs=(p2p_addr,), bootstrap=bootstrap),
                            rpc=RPCSection(address=rpc_addr))
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    node_home = init_home(home, genesis, config=config, validator_key=key,
                          generate_validator_key=not no_validator_key, passphrase=passphrase, overwrite=force)
    pairs: list[tuple[str, object]] = [("home", node_home.root), ("genesis", node_home.genesis_path),
                                       ("config", node_home.config_path)]
    from p2p.identity import peer_id_of  # libp2p is slow to import; only here
    pairs.append(("peer id", peer_id_of(node_home.load_node_key())))
    if node_home.validator_key_path.exists():
        from core.keyfile import is_encrypted
        if is_encrypted(node_home.validator_key_path):
            pairs.append(("validator key", f"{node_home.validator_key_path} (encrypted)"))
        else:
            vkey = load_key(node_home.validator_key_path)
            pairs += [("validator address", vkey.address), ("validator public key", vkey.public_key.hex())]
    echo_pairs(pairs)
    click.echo(f"\nstart it with: inferchain node run --home {node_home.root}")


def _encrypted(path: Path) -> bool:
    from core.keyfile import is_encrypted
    return is_encrypted(path)

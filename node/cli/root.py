"""The command tree; each group lives in its own module."""

from __future__ import annotations

import click

from node.cli.devnet_cmd import devnet
from node.cli.infer_cmd import infer
from node.cli.init_cmd import init
from node.cli.keys_cmd import keys
from node.cli.model_cmd import model
from node.cli.node_cmd import node
from node.cli.query_cmd import query
from node.cli.tx_cmd import tx


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="inferchain", prog_name="inferchain")
def cli() -> None:
    """Inferchain: a blockchain whose consensus rounds run real inference.

    Start a local 4-validator chain with `inferchain devnet up`; see README.md for a walkthrough.
    """


for command in (init, keys, node, devnet, tx, model, infer, query):
    cli.add_command(command)

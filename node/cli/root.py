"""The command tree; each group lives in its own module, imported only when that command runs.

A command costs only what it uses: `inferchain keys show` imports the keys module (click and the key file code),
never libp2p, ONNX Runtime, numpy or the HTTP client that other commands pull in. `inferchain --help` lists
the commands from the table below without importing any of them; tests/node/test_cli_imports.py checks that
each summary here is the one its command shows (so the table cannot drift from the commands' docstrings).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True, slots=True)
class Entry:
    module: str   # where the command lives
    attr: str     # its click object in that module
    summary: str  # the first paragraph of its docstring, for `inferchain --help`


COMMANDS: dict[str, Entry] = {
    "init": Entry("node.cli.init_cmd", "init",
                  "Create a node home: node key, validator key, config.toml and a copy of genesis."),
    "keys": Entry("node.cli.keys_cmd", "keys", "Create, show and list signing keys."),
    "node": Entry("node.cli.node_cmd", "node", "Run a node."),
    "devnet": Entry("node.cli.devnet_cmd", "devnet",
                    "A local devnet of validator processes on 127.0.0.1 (keys are publicly known)."),
    "tx": Entry("node.cli.tx_cmd", "tx", "Send transactions: transfers and staking."),
    "model": Entry("node.cli.model_cmd", "model", "Register models and read the registry."),
    "infer": Entry("node.cli.infer_cmd", "infer",
                   "Run MODEL (id or name) on INPUTS (.npy, .npz or .json; matched to the model's inputs by name, "
                   "with the declared dtype and shape); wait for finality and print the outputs."),
    "query": Entry("node.cli.gov_cmd", "query", "Read accounts, blocks, transactions, validators and PoI scores."),
    "gov": Entry("node.cli.gov_cmd", "gov",
                 "Governance: propose parameter, PoI-model and software-upgrade changes; deposit; vote; read "
                 "proposals."),
    "export": Entry("node.cli.export_cmd", "export",
                    "Export a stopped node's state at a height as a genesis-shaped JSON file (every table, checked)."),
    "completion": Entry("node.cli.completion_cmd", "completion",
                        "Print the shell completion script for SHELL (bash, zsh or fish)."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry.module), entry.attr)
        assert isinstance(command, click.Command), entry
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's own listing, from the summaries above instead of the imported commands."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, summary_command(name).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def summary_command(name: str) -> click.Command:
    """A stand-in carrying only the summary of command `name`, for the listing."""
    return click.Command(name, help=COMMANDS[name].summary)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="inferchain", prog_name="inferchain")
def cli() -> None:
    """Inferchain: a blockchain whose consensus rounds run real inference.

    Start a local 4-validator chain with `inferchain devnet up`; see README.md for a walkthrough.
    """

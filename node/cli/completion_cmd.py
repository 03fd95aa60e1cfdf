"""`inferchain completion bash|zsh|fish`: print the shell's completion script (click's own completion)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

COMPLETE_VAR = "_INFERCHAIN_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    Load it from the shell's start-up file, e.g. `eval "$(inferchain completion bash)"` in ~/.bashrc. The script calls `inferchain` back with _INFERCHAIN_COMPLETE set, so completions follow the installed
    commands and options.
    """
    from node.cli.root import cli

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    click.echo(cls(cli, {}, "inferchain", COMPLETE_VAR).source())

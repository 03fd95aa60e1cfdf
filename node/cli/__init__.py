"""`inferchain`: the command line of the node (console script `inferchain = node.cli:main`).

Every command that talks to a node does so through the typed RPC client (`node.client`). User errors are
one line `error: ...` on stderr with exit status 1; a traceback means a bug of ours.
"""

from __future__ import annotations

import sys

import click

from core.errors import InferchainError
from node.cli.root import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every user-facing error to one line on stderr and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="inferchain", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except (InferchainError, OSError) as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(1)
    sys.exit(0)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{exc.strerror}"
    return text or type(exc).__name__

"""`inferchain export`: write a stopped node's state at a height as a genesis-shaped JSON file (node.export)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from node.cli.common import emit, home_option, json_option


@click.command()
@home_option
@click.option("--height", type=click.IntRange(min=0), default=None, help="The state after this height (default: latest).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the file here (default: export-<chain id>-<height>.json).")
@json_option
def export(home: Path, height: int | None, out: Path | None, as_json: bool) -> None:
    """Export a stopped node's state at a height as a genesis-shaped JSON file (every table, checked)."""
    from node.export import export_home

    doc = export_home(home, height)
    meta = doc["exported"]
    path = out or Path(f"export-{meta['chain_id']}-{meta['height']}.json")
    path.write_text(json.dumps(doc, indent=1) + "\n")
    emit({"file": str(path), "height": meta["height"], "state_root": meta["state_root"],
          "tables": {name: len(rows) for name, rows in doc["state"].items()}}, as_json)

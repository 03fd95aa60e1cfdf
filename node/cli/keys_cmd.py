"""`inferchain keys`: named Ed25519 key files in a keyring directory (core.keyfile format, mode 0600)."""

from __future__ import annotations

from pathlib import Path

import click

from core.keyfile import is_encrypted, save_key
from core.keys import PrivateKey
from node.cli.common import (
    PASSPHRASE_ENV,
    CliError,
    echo_json,
    echo_pairs,
    json_option,
    key_exists_error,
    key_file_for,
    keyring_option,
    keyring_path,
    load_signing_key,
    read_passphrase,
    validate_key_name,
)


@click.group()
def keys() -> None:
    """Create, show and list signing keys."""


@keys.command("new")
@click.argument("name")
@keyring_option
@click.option("--encrypt", is_flag=True,
              help=f"Seal the key with a passphrase (prompted twice, or ${PASSPHRASE_ENV}).")
@json_option
def keys_new(name: str, keyring: Path, encrypt: bool, as_json: bool) -> None:
    """Generate a new key NAME in the keyring."""
    validate_key_name(name)
    path = keyring_path(keyring) / f"{name}.json"
    if path.exists():
        raise key_exists_error(name, path)
    passphrase = read_passphrase("Passphrase", confirm=True) if encrypt else None
    key = PrivateKey.generate()
    keyring_path(keyring).mkdir(parents=True, exist_ok=True, mode=0o700)
    save_key(path, key, passphrase)
    _print_key(name, path, key, passphrase is not None, as_json)


@keys.command("import")
@click.argument("name")
@click.option("--seed", "seed_hex", required=True, help="The 32-byte seed as 64 hex digits (e.g. a devnet key).")
@keyring_option
@click.option("--encrypt", is_flag=True, help="Seal the key with a passphrase.")
@json_option
def keys_import(name: str, seed_hex: str, keyring: Path, encrypt: bool, as_json: bool) -> None:
    """Store an existing key (from its seed) as NAME in the keyring."""
    validate_key_name(name)
    try:
        key = PrivateKey(bytes.fromhex(seed_hex.removeprefix("0x")))
    except ValueError as exc:
        raise CliError(f"--seed: not a 32-byte hex seed ({exc})") from None
    path = keyring_path(keyring) / f"{name}.json"
    if path.exists():
        raise key_exists_error(name, path)
    passphrase = read_passphrase("Passphrase", confirm=True) if encrypt else None
    keyring_path(keyring).mkdir(parents=True, exist_ok=True, mode=0o700)
    save_key(path, key, passphrase)
    _print_key(name, path, key, passphrase is not None, as_json)


@keys.command("show")
@click.argument("name_or_path")
@keyring_option
@click.option("--address", "address_only", is_flag=True, help="Print only the address (for scripts).")
@json_option
def keys_show(name_or_path: str, keyring: Path, address_only: bool, as_json: bool) -> None:
    """Show a key's address and public key (never its secret)."""
    path = key_file_for(name_or_path, keyring)
    key = load_signing_key(name_or_path, keyring)
    if address_only:
        click.echo(str(key.address))
        return
    _print_key(path.stem, path, key, is_encrypted(path), as_json)


@keys.command("list")
@keyring_option
@json_option
def keys_list(keyring: Path, as_json: bool) -> None:
    """List the keys in the keyring (addresses are read without decrypting)."""
    import json

    root = keyring_path(keyring)
    rows = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
            rows.append({"name": path.stem, "address": doc["address"], "encrypted": doc["encryption"] != "none",
                         "path": str(path)})
        except (OSError, ValueError, KeyError, TypeError):
            rows.append({"name": path.stem, "address": "(unreadable key file)", "encrypted": None,
                         "path": str(path)})
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no keys in {root} (create one with `inferchain keys new NAME`)")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        lock = " (encrypted)" if r["encrypted"] else ""
        click.echo(f"{r['name']:<{width}}  {r['address']}{lock}")


def _print_key(name: str, path: Path, key: PrivateKey, encrypted: bool, as_json: bool) -> None:
    doc = {"name": name, "address": str(key.address), "public_key": key.public_key.hex(), "path": str(path),
           "encrypted": encrypted}
    if as_json:
        echo_json(doc)
    else:
        echo_pairs([(k.replace("_", " "), v) for k, v in doc.items()])

"""The node home: one directory holding everything a node needs, created by `init_home`.

    <home>/config.toml          node configuration (node.config)
    <home>/genesis.json         a copy of the chain's genesis
    <home>/node_key.json        libp2p identity (peer id), mode 0600
    <home>/validator_key.json   consensus key (core.keyfile), mode 0600, optionally sealed with a passphrase
    <home>/data/                LevelDB: blocks, commits, tx index, state, models, evidence
    <home>/wal/                 consensus write-ahead log
    <home>/sign_state.json      the signer's double-sign guard (last signed height/round/step)

The node key and the validator key are separate (docs/design.md §5.1): the network identity can be rotated without
touching consensus keys.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, KeyFileError
from core.keyfile import load_key, save_key, write_private_file
from core.keys import PrivateKey
from node.config import NodeConfig, load_config, write_config
from p2p.peerid import ed25519_peer_id, ed25519_private_key_protobuf, node_seed_secret

if TYPE_CHECKING:  # libp2p is imported where a key object is needed: a devnet's homes are written without it
    from libp2p.crypto.keys import KeyPair

NODE_KEY_FORMAT = 1


@dataclass(frozen=True, slots=True)
class NodeHome:
    """Paths of one node home; creating the value touches nothing on disk."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> NodeHome:
        return cls(Path(root).expanduser().resolve())

    @property
    def config_path(self) -> Path:
        toml = self.root / "config.toml"
        json_path = self.root / "config.json"
        return json_path if json_path.exists() and not toml.exists() else toml

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    @property
    def node_key_path(self) -> Path:
        return self.root / "node_key.json"

    @property
    def validator_key_path(self) -> Path:
        return self.root / "validator_key.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def blob_dir(self) -> Path:
        """Model bytes, by hash (node.blobstore)."""
        return self.root / "blobs"

    @property
    def wal_dir(self) -> Path:
        return self.root / "wal"

    @property
    def sign_state_path(self) -> Path:
        return self.root / "sign_state.json"

    def exists(self) -> bool:
        return self.config_path.exists() and self.genesis_path.exists()

    def check(self) -> None:
        """Raise ConfigError naming the first missing piece of an initialised home."""
        if not self.root.is_dir():
            raise ConfigError(f"{self.root}: node home does not exist (run `inferchain init --home {self.root}`)")
        for path in (self.config_path, self.genesis_path, self.node_key_path):
            if not path.exists():
                raise ConfigError(f"{path}: missing from the node home (run `inferchain init`)")

    def load_config(self) -> NodeConfig:
        return load_config(self.config_path)

    def load_genesis(self) -> dict[str, Any]:
        return read_genesis(self.genesis_path)

    def load_node_key(self) -> KeyPair:
        return load_node_key(self.node_key_path)

    def load_validator_key(self, passphrase: str | None = None) -> PrivateKey | None:
        """The validator key, or None when this home has none (a full node)."""
        if not self.validator_key_path.exists():
            return None
        return load_key(self.validator_key_path, passphrase)


def read_genesis(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: genesis file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable genesis JSON document ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("chain_id"), str) or not doc["chain_id"]:
        raise ConfigError(f"{path}: genesis lacks a chain_id")
    return doc


# ---------------------------------------------------------------------------------------------------------
# node key: libp2p's protobuf private key, hex in a JSON document written 0600


def save_node_key(path: Path, key: KeyPair, *, overwrite: bool = False) -> None:
    from p2p.identity import peer_id_of

    _write_node_key(path, str(peer_id_of(key)), key.private_key.serialize(), overwrite=overwrite)


def save_seeded_node_key(path: Path, seed: bytes, *, overwrite: bool = False) -> None:
    """The file `save_node_key` writes for `p2p.identity.node_key_from_seed(seed)`, byte for byte, without
    importing libp2p (p2p.peerid)."""
    secret = node_seed_secret(seed)
    _write_node_key(path, ed25519_peer_id(bytes(PrivateKey(secret).public_key)), ed25519_private_key_protobuf(secret),
                    overwrite=overwrite)


def _write_node_key(path: Path, peer_id: str, private_key: bytes, *, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key")
    doc = {
        "inferchain_node_key": NODE_KEY_FORMAT,
        "type": "libp2p-ed25519",
        "peer_id": peer_id,
        "private_key": private_key.hex(),
    }
    write_private_file(path, (json.dumps(doc, indent=2) + "\n").encode())


def load_node_key(path: Path) -> KeyPair:
    from libp2p.crypto.keys import KeyPair
    from libp2p.crypto.serialization import deserialize_private_key

    from p2p.identity import peer_id_of

    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: node key file not found") from None
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open; run: chmod 600 {path}")
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("inferchain_node_key") != NODE_KEY_FORMAT or doc.get("type") != "libp2p-ed25519":
            raise KeyFileError(f"{path}: not an Inferchain node key file")
        private = deserialize_private_key(bytes.fromhex(doc["private_key"]))
    except KeyFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyFileError(f"{path}: malformed node key file ({type(exc).__name__})") from None
    except Exception as exc:  # protobuf raises its own DecodeError type for corrupt bytes
        raise KeyFileError(f"{path}: corrupt node key ({type(exc).__name__})") from None
    key = KeyPair(private, private.get_public_key())
    if doc.get("peer_id") not in (None, str(peer_id_of(key))):
        raise KeyFileError(f"{path}: private key does not match the recorded peer id")
    return key


# ---------------------------------------------------------------------------------------------------------
# init


def init_home(
    root: str | os.PathLike[str],
    genesis: str | os.PathLike[str] | dict[str, Any] | bytes,
    *,
    config: NodeConfig | None = None,
    validator_key: PrivateKey | None = None,
    generate_validator_key: bool = True,
    node_key: KeyPair | None = None,
    node_key_seed: bytes | None = None,
    passphrase: str | None = None,
    overwrite: bool = False,
) -> NodeHome:
    """Create a node home: config, genesis copy, node key, validator key (given, generated or none), dirs.

    Refuses to touch an existing home unless `overwrite` (keys are never overwritten: an existing key file
    is kept, since losing a validator key is unrecoverable).
    """
    home = NodeHome.at(root)
    if home.exists() and not overwrite:
        raise ConfigError(f"{home.root}: already initialised; pass overwrite to rewrite config and genesis")
    home.root.mkdir(parents=True, exist_ok=True)
    genesis_bytes = _genesis_bytes(genesis)
    try:
        doc = json.loads(genesis_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"genesis is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("chain_id"), str):
        raise ConfigError("genesis lacks a chain_id")
    home.genesis_path.write_bytes(genesis_bytes)
    _copy_model_files(doc, _genesis_dir(genesis), home.root)
    write_config(home.root / "config.toml", config or NodeConfig())
    if not home.node_key_path.exists():
        if node_key is None and node_key_seed is not None:
            save_seeded_node_key(home.node_key_path, node_key_seed)
        else:
            from p2p.identity import new_node_key

            save_node_key(home.node_key_path, node_key or new_node_key())
    if not home.validator_key_path.exists():
        if validator_key is not None:
            save_key(home.validator_key_path, validator_key, passphrase)
        elif generate_validator_key:
            save_key(home.validator_key_path, PrivateKey.generate(), passphrase)
    for directory in (home.data_dir, home.wal_dir):
        directory.mkdir(mode=0o700, exist_ok=True)
    return home


def _genesis_dir(genesis: object) -> Path | None:
    return Path(genesis).resolve().parent if isinstance(genesis, str | os.PathLike) else None


def _copy_model_files(doc: dict[str, Any], source_dir: Path | None, home_root: Path) -> None:
    """Copy the model and golden files genesis names (relative paths) next to the home's genesis copy, so the
    home is self-contained; they resolve next to the source genesis, else in the repository, as the VM does."""
    from vm.genesis import REPO_ROOT

    models = doc.get("models")
    if not isinstance(models, list):
        return
    for entry in models:
        if not isinstance(entry, dict):
            continue
        for field in ("file", "golden"):
            rel = entry.get(field)
            if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                continue  # the VM's genesis loader reports it
            target = home_root / rel
            for root in (source_dir, REPO_ROOT):
                if root is None or not (root / rel).is_file():
                    continue
                if (root / rel).resolve() != target.resolve():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(root / rel, target)
                break


def _genesis_bytes(genesis: str | os.PathLike[str] | dict[str, Any] | bytes) -> bytes:
    if isinstance(genesis, bytes):
        return genesis
    if isinstance(genesis, dict):
        return (json.dumps(genesis, indent=2) + "\n").encode()
    path = Path(genesis)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read genesis ({exc.strerror})") from None

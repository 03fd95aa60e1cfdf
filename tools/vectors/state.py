"""State vectors: roots of the authenticated map for fixed key sets, and proofs of present and absent keys.

Each map is built by the real `AuthenticatedMap` over the in-memory store, version by version; every root
is also recomputed here from the definition (a binary sparse Merkle tree over SHA-256(key), one-entry
subtrees collapsed), and every proof is checked with `verify_proof`, so a file can only hold what both agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.state import AuthenticatedMap
from core.state.hashing import key_path, leaf_hash, node_hash, value_hash
from core.state.proof import verify_proof
from core.store import MemoryStore
from tools.vectors.render import dump, render


def _bit(path: bytes, index: int) -> int:
    return (path[index >> 3] >> (7 - (index & 7))) & 1


def definition_root(contents: Mapping[bytes, bytes]) -> bytes:
    """The root by definition, independent of the 16-way storage layout."""

    def subtree(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not entries:
            return bytes(32)
        if len(entries) == 1:
            path, value = entries[0]
            return leaf_hash(path, value_hash(value))
        left = [e for e in entries if not _bit(e[0], depth)]
        right = [e for e in entries if _bit(e[0], depth)]
        return node_hash(subtree(left, depth + 1), subtree(right, depth + 1))

    return subtree([(key_path(k), v) for k, v in contents.items()], 0)


def _keys(n: int) -> dict[bytes, bytes | None]:
    return {f"key-{i:04d}".encode(): f"value-{i:04d}".encode() for i in range(n)}


# name -> the versions of one map: each version's changes (None deletes), applied in order.
MAPS: dict[str, list[dict[bytes, bytes | None]]] = {
    "empty": [{}],
    "one_key": [{b"a": b"1"}],
    "two_keys": [{b"a": b"1", b"b": b"2"}],
    "empty_key_and_empty_value": [{b"": b"", b"k": b""}],
    "sixteen_keys": [_keys(16)],
    "thousand_keys": [_keys(1000)],
    "history": [
        _keys(100),
        {**{f"key-{i:04d}".encode(): None for i in range(0, 100, 10)},
         **{f"key-{i:04d}".encode(): b"changed" for i in range(5, 100, 10)},
         b"new-key": b"new-value"},
        {f"key-{i:04d}".encode(): None for i in range(100) if i % 10 != 0},
    ],
}
ABSENT_KEYS = (b"absent", b"key-9999", b"a\x00")


def map_case(name: str, versions: list[dict[bytes, bytes | None]]) -> dict[str, Any]:
    smap = AuthenticatedMap(MemoryStore())
    contents: dict[bytes, bytes] = {}
    rendered_versions = []
    for version, changes in enumerate(versions, 1):
        root = smap.commit(version, changes)
        for key, value in changes.items():
            if value is None:
                contents.pop(key, None)
            else:
                contents[key] = value
        if root != definition_root(contents):
            raise AssertionError(f"state map {name} v{version}: the tree and the definition disagree")
        rendered_versions.append({
            "version": version,
            "changes": [[k.hex(), None if v is None else v.hex()] for k, v in sorted(changes.items())],
            "entries": len(contents),
            "root": root.hex(),
        })
    last = len(versions)
    root = smap.root(last)
    present = sorted(contents)
    probe = sorted({*present[:2], *present[len(present) // 2:len(present) // 2 + 1], *present[-1:]})
    proofs = []
    for key in [*probe, *ABSENT_KEYS]:
        value = contents.get(key)
        proof = smap.prove(key, last)
        if not verify_proof(root, key, value, proof):
            raise AssertionError(f"state map {name}: the proof of {key!r} does not verify")
        proofs.append({"key": key.hex(), "value": None if value is None else value.hex(),
                       "key_path": key_path(key).hex(), "proof": proof.encode().hex(), "proof_fields": render(proof)})
    return {"name": name, "versions": rendered_versions, "proofs_at_version": last, "proofs": proofs}


def generate() -> dict[str, bytes]:
    return {"state/maps.json": dump({
        "about": "Authenticated state map: the root after each version's changes, and proofs at the last "
                 "version (value null: a proof of absence). Keys and values are hex.",
        "maps": [map_case(name, versions) for name, versions in MAPS.items()],
    })}

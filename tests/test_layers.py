"""The import rules of docs/architecture.md, checked on every file: imports point one way,
`node → {consensus, p2p, vm} → core`, and no runtime package imports tooling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[1]
OURS = ("core", "consensus", "vm", "p2p", "node", "tools", "tests", "bench")
RUNTIME = ("core", "consensus", "vm", "p2p", "node")
# What each package may import of ours (itself included). p2p.testing is listed apart from p2p.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "consensus": frozenset({"core", "consensus"}),
    "vm": frozenset({"core", "vm"}),
    "p2p": frozenset({"core", "p2p"}),
    "p2p.testing": frozenset({"core", "p2p", "p2p.testing"}),
    "node": frozenset({"core", "consensus", "vm", "p2p", "node"}),
    "tools": frozenset({"core", "consensus", "vm", "p2p", "node", "tools"}),
}


def layer_of(module: str) -> str | None:
    """The rule a module falls under: its top package, or p2p.testing."""
    if module == "p2p.testing" or module.startswith("p2p.testing."):
        return "p2p.testing"
    top = module.split(".")[0]
    return top if top in OURS else None


def imported_modules(path: Path) -> list[tuple[int, list[str]]]:
    """Absolute import statements of a file: line number and the modules each may name (relative imports
    stay inside a package). `from p2p import testing` may name the module p2p.testing, so it lists both."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]))
    return found


def violations(root: Path) -> list[str]:
    out = []
    for package in ALLOWED:
        folder = root / package.replace(".", "/")
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(root)
            module = ".".join(rel.with_suffix("").parts)
            rule = layer_of(module)
            assert rule is not None
            for line, targets in imported_modules(path):
                bad = [t for t in targets if (layer := layer_of(t)) is not None and layer not in ALLOWED[rule]]
                if bad:
                    out.append(f"{rel}:{line} ({rule}) imports {bad[0]}")
    return out


def test_every_import_points_down_the_layers() -> None:
    assert violations(ROOT) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The rule above is not vacuous: each upward import is named; p2p.testing may import p2p."""
    for package in ("core", "node", "p2p/testing"):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
    (tmp_path / "core" / "bad.py").write_text("from vm.state import Account\n")
    (tmp_path / "node" / "bad.py").write_text("import tools.genesis\n")
    (tmp_path / "p2p" / "bad.py").write_text("from p2p import testing\n")
    (tmp_path / "p2p" / "testing" / "ok.py").write_text("from p2p.gossip import Gossip\n")
    assert sorted(violations(tmp_path)) == [
        "core/bad.py:1 (core) imports vm.state",
        "node/bad.py:1 (node) imports tools.genesis",
        "p2p/bad.py:1 (p2p) imports p2p.testing",
    ]


def test_runtime_packages_are_the_ones_the_wheel_ships() -> None:
    """pyproject's package list names exactly the runtime packages and leaves tooling out."""
    import tomllib

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert sorted(p.rstrip("*") for p in find["include"]) == sorted(RUNTIME)
    assert {"p2p.testing*", "tools*", "tests*", "bench*"} <= set(find["exclude"])

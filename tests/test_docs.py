"""The documentation stands alone: the README indexes every page in docs/, every `docs/design.md §N`
citation in the repository names a section that exists, every repository path a doc names exists, and no
file cites a document the clone lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("core", "consensus", "vm", "p2p", "node", "tools", "tests", "bench", "docs")
CITATION = re.compile(r"docs/design\.md (§[\d.§\-\u2013, ]+)")
SECTION = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.M)


def repository_texts() -> dict[Path, str]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "Makefile"]
    for folder in SOURCES:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".toml"}]
    return {p.relative_to(ROOT): p.read_text() for p in files if p.is_file()}


def cited_sections(text: str) -> set[str]:
    """Every section number a `docs/design.md §…` citation names (`§2.3-§2.4` names 2.3 and 2.4)."""
    return {n.rstrip(".") for m in CITATION.finditer(text) for n in re.findall(r"\d+(?:\.\d+)?", m.group(1))}


def test_the_readme_indexes_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{p.name})" not in readme]
    assert missing == []


def test_every_design_citation_names_a_section_that_exists() -> None:
    sections = set(SECTION.findall((ROOT / "docs" / "design.md").read_text()))
    assert {"2.6", "4.11", "6"} <= sections  # the pattern reads the headings at all
    dangling = {f"{path}: §{n}" for path, text in repository_texts().items() for n in cited_sections(text)
                if n not in sections}
    assert sorted(dangling) == []


def test_the_citation_pattern_reads_ranges_and_lists() -> None:
    assert cited_sections("see docs/design.md §2.3-§2.4, and docs/design.md §4.5, §4.10): x") == {
        "2.3", "2.4", "4.5", "4.10"}


def test_every_repository_path_a_doc_names_exists() -> None:
    """Files move; the docs that name them (`node/chain.py`, `tests/vectors/`) must move with them."""
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "tests" / "vectors" / "README.md"]
    named = re.compile(r"`((?:core|vm|consensus|p2p|node|tools|tests|bench|docs)/[\w/.]*)`")
    missing = sorted(f"{page.relative_to(ROOT)}: {path}" for page in pages
                     for path in set(named.findall(page.read_text())) if not (ROOT / path).exists())
    assert missing == []


def test_no_file_cites_a_document_outside_the_repository() -> None:
    outside = re.compile(r"DESIGN\.md|DESIGN §|research/[\w-]+\.md|shared/")
    hits = sorted(f"{path}" for path, text in repository_texts().items()
                  if path != Path("tests/test_docs.py") and outside.search(text))
    assert hits == []

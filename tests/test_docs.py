"""The documentation stands alone: the README indexes every page in docs/, every `docs/design.md §N`
citation in the repository names a section that exists, every `docs/page.md, "Section"` citation names a
heading (or a bold paragraph lead) of that page, every repository path a doc names exists, and no file cites a
document the clone lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("core", "consensus", "vm", "p2p", "node", "tools", "tests", "bench", "docs")
CITATION = re.compile(r"docs/design\.md (§[\d.§\-\u2013, ]+)")
SECTION = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.M)
# `docs/performance-cpu.md, "Garbage collection"`, `docs/rpc.md "A transaction's fate"`, `docs/vm.md ("The VM's
# share")`: a page and the start of a section's title, quoted; in code the quote may run on to the next comment
# line.
NAMED = re.compile(r'docs/([\w-]+\.md),?\s*\(?"([^"]{3,200})"')


def repository_texts() -> dict[Path, str]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "Makefile"]
    for folder in SOURCES:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".toml"}]
    return {p.relative_to(ROOT): p.read_text() for p in files if p.is_file()}


def cited_sections(text: str) -> set[str]:
    """Every section number a `docs/design.md §…` citation names (`§2.3-§2.4` names 2.3 and 2.4)."""
    return {n.rstrip(".") for m in CITATION.finditer(text) for n in re.findall(r"\d+(?:\.\d+)?", m.group(1))}


def joined(text: str) -> str:
    """Lines run together, a comment's `#` dropped, so a title cut at a line's end reads whole."""
    return re.sub(r"\s*\n\s*(?:#+ )?", " ", text)


def title_key(title: str) -> str:
    return " ".join(title.lower().replace("`", "").replace("...", "").split()).rstrip(" .,:")


def titles(page: Path) -> set[str]:
    """The page's headings and the bold leads of its paragraphs (`**Stall under load: ...**`)."""
    text = page.read_text()
    found = re.findall(r"^#{1,6} (.*)$", text, re.M) + re.findall(r"\*\*([^*]+)\*\*", joined(text))
    return {title_key(t) for t in found}


def named_sections(text: str) -> list[tuple[str, str]]:
    """Every (page, quoted title) a `docs/page.md, "Title"` citation in `text` names."""
    return [(m.group(1), m.group(2)) for m in NAMED.finditer(joined(text))]


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


def test_every_named_section_citation_names_a_title_that_exists() -> None:
    """Sections move between pages (the performance record did); a citation's quoted title must start a heading
    or a bold paragraph lead of the page it names."""
    pages: dict[str, set[str]] = {}
    dangling = []
    cited = 0
    for path, text in repository_texts().items():
        if path == Path("tests/test_docs.py"):  # its own examples
            continue
        for page, title in named_sections(text):
            cited += 1
            if not (ROOT / "docs" / page).is_file():
                dangling.append(f"{path}: docs/{page} (no such page)")
                continue
            known = pages.setdefault(page, titles(ROOT / "docs" / page))
            if not any(t.startswith(title_key(title)) for t in known):
                dangling.append(f'{path}: docs/{page}, "{title}"')
    assert cited > 100  # the pattern reads the citations at all
    assert sorted(dangling) == []


def test_the_section_citation_pattern_reads_the_forms_in_use() -> None:
    text = ('docs/vm.md ("The VM\'s share"), docs/rpc.md "A transaction\'s fate", x (docs/performance-cpu.md, "Gossip:\n'
            '    # duplicates ...")')
    assert named_sections(text) == [("vm.md", "The VM\'s share"), ("rpc.md", "A transaction\'s fate"),
                                    ("performance-cpu.md", "Gossip: duplicates ...")]
    assert title_key("Gossip: duplicates ...") == "gossip: duplicates"


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

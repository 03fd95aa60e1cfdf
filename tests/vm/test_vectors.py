"""Spec vectors (tests/vectors): regenerated from the code and compared byte for byte with the stored files,
and read back the way a second implementation would read them."""

from __future__ import annotations

import importlib
import json

import pytest

from core.codec import Wire
from core.errors import DecodeError
from tools.vectors.generate import VECTORS_DIR, differences, generate, on_disk
from tools.vectors.render import render

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def stored() -> dict[str, bytes]:
    return on_disk(VECTORS_DIR)


def test_the_code_regenerates_every_vector_byte_for_byte(stored: dict[str, bytes]) -> None:
    """A change of the wire, the state root, PoI or a model id shows here: regenerate with `make vectors`
    and say so in the commit."""
    assert differences(generate(), stored) == []


def wire_type(doc: dict[str, object]) -> type[Wire]:
    cls = getattr(importlib.import_module(str(doc["module"])), str(doc["type"]))
    assert isinstance(cls, type) and issubclass(cls, Wire)
    return cls


def test_every_stored_wire_case_decodes_to_its_fields_and_reencodes(stored: dict[str, bytes]) -> None:
    wire_files = [p for p in stored if p.startswith("wire/") and p != "wire/rejected.json"]
    assert len(wire_files) > 60
    for path in wire_files:
        doc = json.loads(stored[path])
        cls = wire_type(doc)
        assert doc["cases"], path
        for case in doc["cases"]:
            data = bytes.fromhex(case["encoding"])
            value = cls.decode(data)
            assert render(value) == case["value"], (path, case["name"])
            assert value.encode() == data, (path, case["name"])


def test_every_stored_refusal_is_refused(stored: dict[str, bytes]) -> None:
    cases = json.loads(stored["wire/rejected.json"])["cases"]
    assert len(cases) >= 10
    for case in cases:
        data = bytes.fromhex(case["encoding"]) if case["encoding"] is not None else b"\x00" * case["length"]
        with pytest.raises(DecodeError):
            wire_type(case).decode(data)


def test_the_readme_describes_every_group(stored: dict[str, bytes]) -> None:
    readme = (VECTORS_DIR / "README.md").read_text()
    for group in sorted({p.split("/")[0] for p in stored}):
        assert f"`{group}/" in readme, group

"""The token's units (core.units): what people type becomes base units exactly, and amounts print one way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DecodeError
from core.types import U64_MAX
from core.units import DEFAULT_TOKEN, Token, format_amount, parse_amount

pytestmark = pytest.mark.core

IFC = DEFAULT_TOKEN


@pytest.mark.parametrize(("text", "base"), [
    ("10ifc", 10_000_000), ("2.5ifc", 2_500_000), ("2.5 IFC", 2_500_000), ("0.000001ifc", 1), (".5ifc", 500_000),
    ("1500uifc", 1500), ("1500", 1500), ("5_000_000", 5_000_000), ("1_000.25ifc", 1_000_250_000),
    (str(U64_MAX), U64_MAX), ("0", 0),
])
def test_typed_amounts_become_base_units(text: str, base: int) -> None:
    assert parse_amount(text, IFC) == base


@pytest.mark.parametrize(("text", "why"), [
    ("2.5", "a fraction needs its unit"),
    ("0.0000001ifc", "at most 6 decimals"),
    ("1.5uifc", "whole numbers"),
    ("10eth", "unknown unit 'eth'"),
    (str(U64_MAX + 1), "more than the largest amount"),
    ("18446744073709.551616ifc", "more than the largest amount"),
    ("-5", "is not an amount"),
    ("1e9", "unknown unit 'e9'"),
    ("ten", "is not an amount"),
    ("", "is not an amount"),
])
def test_malformed_amounts_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_amount(text, IFC)


def test_amounts_print_in_the_display_unit_without_rounding() -> None:
    assert format_amount(1_500_000_000, IFC) == "1_500 ifc"
    assert format_amount(2_500_001, IFC) == "2.500001 ifc"
    assert format_amount(0, IFC) == "0 ifc"
    assert format_amount(U64_MAX, IFC) == "18_446_744_073_709.551615 ifc"
    assert format_amount(7, Token("tok", "atok", 0)) == "7 tok"


@given(st.integers(min_value=0, max_value=U64_MAX), st.integers(min_value=0, max_value=18))
def test_what_is_printed_parses_back_to_the_same_amount(value: int, decimals: int) -> None:
    token = Token("tok", "utok", decimals)
    shown = format_amount(value, token)
    assert parse_amount(shown.replace(" ", ""), token) == value


@pytest.mark.parametrize("fields", [["ifc", "ifc", 6], ["IFC", "uifc", 6], ["ifc", "uifc", 19], ["i", "uifc", 6]])
def test_the_token_record_refuses_bad_names_and_decimals(fields: list[object]) -> None:
    with pytest.raises((DecodeError, ValueError)):
        Token.from_obj(fields)

"""The token's units: one place that names them, formats amounts for people and parses amounts people type.

On chain every amount is an integer of the base unit (`uifc`); people read and type the display unit
(`ifc` = 10**decimals base units). Genesis fixes the names and the decimals (`token` in genesis.json,
kept in the chain parameters), so every command shows amounts the same way and reads `2.5ifc`, `1500uifc`
or a bare integer (base units) alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated

from core.codec import U8, MaxLen, Wire, wire
from core.types import U64_MAX

MAX_DECIMALS = 18
_DENOM = re.compile(r"[a-z][a-z0-9]{1,15}")
_AMOUNT = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)\s*([A-Za-z][A-Za-z0-9]*)?\s*")


@wire(max_bytes=64)
class Token(Wire):
    """The token's names: `display` (what people count in) is 10**`decimals` of `base` (what the chain counts)."""

    display: Annotated[str, MaxLen(16)]
    base: Annotated[str, MaxLen(16)]
    decimals: U8

    def validate_wire(self) -> None:
        for name in (self.display, self.base):
            if not _DENOM.fullmatch(name):
                raise ValueError(f"token denomination {name!r}: 2 to 16 lowercase letters or digits, a letter first")
        if self.display == self.base:
            raise ValueError("token.display and token.base must differ")
        if self.decimals > MAX_DECIMALS:
            raise ValueError(f"token.decimals must be at most {MAX_DECIMALS}")


DEFAULT_TOKEN = Token("ifc", "uifc", 6)


def format_amount(value: int, token: Token) -> str:
    """`1500.25 ifc` for 1500250000 base units: display units, trailing zeros dropped, never rounded."""
    whole, frac = divmod(int(value), 10**token.decimals)
    text = f"{whole:,}".replace(",", "_")
    if frac:
        text += "." + f"{frac:0{token.decimals}d}".rstrip("0")
    return f"{text} {token.display}"


@dataclass(frozen=True, slots=True)
class AmountText:
    """An amount as typed (`2.5ifc`, `1500uifc`, `1500`), checked for its form; its value needs the token."""

    number: str       # digits with at most one '.', underscores removed
    unit: str | None  # as typed, lower-cased; None for a bare number (base units)

    def resolve(self, token: Token) -> int:
        """The amount in base units; ValueError with a one-line reason if it is not one."""
        if self.unit is None or self.unit == token.base:
            if "." in self.number:
                raise ValueError(f"{self.number}: base units ({token.base}) are whole numbers")
            value = int(self.number)
        elif self.unit == token.display:
            try:
                scaled = Decimal(self.number).scaleb(token.decimals)
            except InvalidOperation:
                raise ValueError(f"{self.number!r} is not a number") from None
            if scaled != scaled.to_integral_value():
                raise ValueError(f"{self.number}{token.display}: at most {token.decimals} decimals")
            value = int(scaled)
        else:
            raise ValueError(f"unknown unit {self.unit!r}: use {token.display} or {token.base} "
                             f"(a bare number counts {token.base})")
        if value > U64_MAX:
            raise ValueError(f"{self.number}{self.unit or ''} is more than the largest amount, "
                             f"{U64_MAX} {token.base}")
        return value


def parse_amount_text(text: str) -> AmountText:
    """Check an amount's form (digits, an optional fraction, an optional unit); ValueError if it has none."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an amount (e.g. 10ifc, 2.5ifc, 1500uifc, or base units 1500)")
    number = match.group(1).replace("_", "")
    if number.endswith("."):
        number = number[:-1]
    unit = match.group(2).lower() if match.group(2) else None
    if unit is None and "." in number:
        raise ValueError(f"{text!r}: a fraction needs its unit (e.g. {text.strip()}ifc)")
    return AmountText(number, unit)


def parse_amount(text: str, token: Token) -> int:
    """`2.5ifc` -> 2500000 (with 6 decimals); a bare integer is base units; ValueError with a reason otherwise."""
    return parse_amount_text(text).resolve(token)

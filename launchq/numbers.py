"""Numbers as people write them: `0.00001`, not `1e-05`; `25000000000000000`, not `2.5e+16`.

Python writes a float with the fewest digits that read back as the same
number, but switches to an exponent below 0.0001 and from 1e16 up. People
write the digits out. `plain_number` keeps Python's digits and only moves the
decimal point, so the text reads back as exactly the same float. Numbers too
small or too large to write out in a line (`1e-30`, `6.02e23`) keep an
exponent, written short (`6.02e23`, no `+` and no padded zeros).

What machines read (the JSON API, rendered configs) keeps its own notation;
this is for what people read.
"""

from __future__ import annotations

from decimal import Decimal

# Longer than this written out, a number keeps its exponent (and stays well under the
# 64 characters a number typed into a form may have).
MAX_PLAIN_DIGITS = 24


def plain_number(value: object) -> str:
    """A number as text people read and could type back in; anything else as `str` writes it."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    text = repr(value)
    if "e" not in text:  # nan, inf, and everything Python already writes out
        return text
    written = format(Decimal(text), "f")
    if len(written.lstrip("-")) <= MAX_PLAIN_DIGITS:
        return written
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


def plain_numbers(values: dict) -> dict:
    """A run's values with each number written as `plain_number` writes it, for showing."""
    return {name: plain_number(value) for name, value in values.items()}

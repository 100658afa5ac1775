"""Numbers across launchq's edge: read strictly from requests, written as people write them.

Reading. Only plain ASCII decimal notation is a number: `²`, `٣`, `1_000`, `0x10`, `1e3` for a whole
number, and anything of more than MAX_NUMBER_CHARS characters, are not (Python's own `int()` takes the
first three, and spends quadratic time on, or refuses with a ValueError, thousands of digits). A count read
from a request (a version number, an offset, an index) is also kept inside the range the caller names, so it
never reaches the database as a number it cannot store. Every number a request carries goes through here.

Writing. Python writes a float with the fewest digits that read back as the same
number, but switches to an exponent below 0.0001 and from 1e16 up. People
write the digits out. `plain_number` keeps Python's digits and only moves the
decimal point, so the text reads back as exactly the same float. Numbers too
small or too large to write out in a line (`1e-30`, `6.02e23`) keep an
exponent, written short (`6.02e23`, no `+` and no padded zeros).
What machines read (the JSON API, rendered configs) keeps its own notation;
that is for what people read.
No Django here.
"""

from __future__ import annotations

import re
from decimal import Decimal


MAX_NUMBER_CHARS = 64
MAX_ID = 2**31 - 1  # the largest number every database stores in an integer column

INTEGER_TEXT = re.compile(r"[+-]?[0-9]+\Z")
FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
NON_FINITE_TEXT = re.compile(r"[+-]?(?:nan|inf|infinity)\Z", re.IGNORECASE)

NOT_WHOLE = "{name} must be a whole number written with the digits 0-9 (got {value})."
OUT_OF_RANGE = "{name} must be a whole number from {minimum} to {maximum} (got {value})."


class NumberRefused(ValueError):
    """A number from a request that is not one, or is out of range; `code` is `type` or `out_of_range`."""

    def __init__(self, code: str, message: str, bound: tuple[int, int] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.bound = bound


def parse_integer(text: str) -> int | None:
    """A whole number in plain ASCII decimal notation (a sign allowed), or None."""
    if len(text) > MAX_NUMBER_CHARS or not INTEGER_TEXT.match(text):
        return None
    return int(text)


def parse_float(text: str) -> float | None:
    """A number in plain ASCII decimal notation (`2.5`, `-1e-3`), or None. It may be infinite (`1e999`)."""
    if len(text) > MAX_NUMBER_CHARS or not FLOAT_TEXT.match(text):
        return None
    return float(text)


def read_count(raw: object, *, name: str, maximum: int = MAX_ID, minimum: int = 0) -> int | None:
    """A whole number from minimum to maximum, from text (a form, a query string) or a JSON integer.

    Missing (None or "") is None; anything else that is not such a number raises `NumberRefused`.
    """
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    else:
        number = parse_integer(raw) if isinstance(raw, str) else None
        if number is None:
            raise NumberRefused("type", NOT_WHOLE.format(name=name, value=shown(raw)))
    if not minimum <= number <= maximum:
        raise NumberRefused("out_of_range", OUT_OF_RANGE.format(name=name, minimum=minimum, maximum=maximum, value=shown(raw)), (minimum, maximum))
    return number


def shown(raw: object) -> str:
    """A value as a message quotes it: at most 40 characters of it."""
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) >= 10**40:
        return "a number of more than 40 digits"
    text = repr(raw) if isinstance(raw, str) else str(raw)
    return text if len(text) <= 40 else text[:40] + "…"


# --- writing -----------------------------------------------------------------


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


__all__ = ["MAX_ID", "MAX_NUMBER_CHARS", "NumberRefused", "parse_float", "parse_integer", "plain_number", "plain_numbers", "read_count"]

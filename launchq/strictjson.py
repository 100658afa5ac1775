"""JSON as launchq reads it from clients: a key given twice in one object is an error.

Python's reader keeps the last of two values silently; a value checked by one layer and
used by another could then differ (`{"gpus": 1, "gpus": 9}`), so every path refuses it.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_refuse_repeated_keys)
    except json.JSONDecodeError:
        raise
    except ValueError as error:
        if "int_max_str_digits" in str(error):  # Python's guard against numbers of thousands of digits
            raise ValueError(HUGE_NUMBER) from None
        raise


HUGE_NUMBER = "a number in it has more digits than any value accepts"


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"the key {key!r} is given twice in one object")
        data[key] = value
    return data

"""Which characters text that people type into launchq may hold.

Refused everywhere a person names or describes something (run names, template
values, jobs, field definitions, token and agent names):
- control characters other than tab and line breaks: never meant, and not every database stores NUL;
- invisible formatting characters (Unicode's Cf), bidi controls first among them: U+202E RIGHT-TO-LEFT
  OVERRIDE makes `run-exe.txt` show as `run-txt.exe`, U+200B hides inside a name that looks like another;
- line and paragraph separators (U+2028, U+2029): line breaks that most tools do not show as such;
- lone surrogates: not text, and no database or UTF-8 encoder takes them.
The zero-width joiner and non-joiner are kept where they join two non-ASCII characters: emoji sequences and
scripts such as Persian and the Indic ones need them.
No Django here.
"""

from __future__ import annotations

import re
import unicodedata

_JOINERS = "\u200c\u200d"
# A quick pre-filter: the categories above, roughly; `unwanted_character` decides exactly.
_SUSPECT = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001-\U000e007f]"
)


def unwanted_character(text: str) -> str | None:
    """The first character `text` may not hold, or None."""
    for match in _SUSPECT.finditer(text):
        char = match.group()
        if char in _JOINERS and _joins(text, match.start()):
            continue
        if _category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return char
    return None


def describe(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`, for messages."""
    name = unicodedata.name(char, "") if _category(char) != "Cs" else "SURROGATE"
    kind = "a control character" if _category(char) == "Cc" else "an invisible or formatting character"
    return f"{kind} (U+{ord(char):04X}{' ' + name if name else ''})"


def _category(char: str) -> str:
    return unicodedata.category(char)


def _joins(text: str, at: int) -> bool:
    before, after = text[at - 1 : at], text[at + 1 : at + 2]
    return bool(before) and bool(after) and not before.isascii() and not after.isascii() and after not in _JOINERS


__all__ = ["describe", "unwanted_character"]

"""The patterns admins put on free-text fields: RE2 syntax, run by RE2, and spelled for the browser.

A pattern runs on a member's value at every launch, so it runs on Google's RE2
(through the `google-re2` binding): its time grows with the value's length,
never exponentially, whatever the pattern (`(a+)+$` included). What RE2 cannot
run (backreferences like `\\1`, lookarounds like `(?=`, `\\Z`) is refused when
the admin saves, with RE2's reason and a hint.

`html_pattern` spells a pattern for the launch form's `pattern` attribute,
which the browser reads as JavaScript with the `v` flag. It rewrites what it
knows means the same in both dialects and gives "" (no browser check; the
server checks anyway) for anything else, so the browser never refuses a value
the server would take.
No Django here.
"""

from __future__ import annotations

import functools
import re

import re2

# RE2's own limit on a compiled pattern's memory; patterns are at most MAX_PATTERN_LENGTH characters anyway.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr
_OPTIONS.max_mem = 8 << 20

_HINTS = (
    ("invalid escape sequence: \\Z", "RE2 writes the end of the text as \\z (and a pattern must match the whole value anyway)"),
    ("invalid escape sequence: \\", "backreferences (\\1, (?P=name)) and escapes like \\Z, \\G are not RE2 syntax"),
    ("invalid perl operator: (?=", "lookaheads ((?=...), (?!...)) are not RE2 syntax"),
    ("invalid perl operator: (?!", "lookaheads ((?=...), (?!...)) are not RE2 syntax"),
    ("invalid perl operator: (?<", "lookbehinds ((?<=...), (?<!...)) are not RE2 syntax"),
    ("invalid perl operator: (?>", "atomic groups ((?>...)) are not RE2 syntax"),
    ("bad repetition operator", "possessive quantifiers (a++, a*+) are not RE2 syntax"),
    ("invalid named capture group: (?P=", "backreferences ((?P=name)) are not RE2 syntax"),
)


class PatternError(ValueError):
    """A pattern RE2 cannot run; `reason` says why in words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str):
    """The compiled pattern, or `PatternError`. Compiled once per pattern and process."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as error:
        raise PatternError(_reason(error)) from None
    except (TypeError, UnicodeEncodeError):  # lone surrogates and the like: not text RE2 can read
        raise PatternError("it contains characters that are not valid text") from None


def matches(pattern: str, text: str) -> bool:
    """Whether the whole of `text` matches `pattern` (raises `PatternError` for a pattern RE2 cannot run)."""
    return compile_pattern(pattern).fullmatch(text) is not None


def _reason(error: Exception) -> str:
    raw = error.args[0] if error.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for needle, hint in _HINTS:
        if needle in text:
            return f"{text} ({hint})"
    return text or "RE2 cannot compile it"


# --- the browser's spelling ---------------------------------------------------

_QUANTIFIER = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_UNICODE_CLASS = re.compile(r"\\([pP])(?:([A-Za-z])|\{(\^?)([A-Za-z_]+)\})")
_GENERAL_CATEGORIES = {
    "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Ps", "Pe",
    "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Co", "Cs",
}
_POSIX = {  # RE2's [[:name:]] classes are ASCII
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ", "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~", "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z", "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
    "punct": "!-\\/:-@\\[-`\\{-~",
}
_PERL_SPACE = "\\t\\n\\f\\r "  # RE2's \s; JavaScript's \s takes Unicode spaces too
_SAME_ESCAPES = set("dDwWbBntrfv")  # mean the same to RE2 and to JavaScript (\d, \w and \b are ASCII in both)
_SYNTAX = set("^$\\.*+?()[]{}|/")
_IN_CLASS_ESCAPED = set("()[]{}/|&!#$%*+,.:;<=>?@^`~-")
_CLASS_ATOM = re.compile(r"\[:(\^?)([a-z]+):\]")


def html_pattern(pattern: str) -> str:
    """The pattern as the browser's `pattern` attribute should read it, or "" when it cannot say the same."""
    if not pattern:
        return ""
    try:
        compile_pattern(pattern)
    except PatternError:
        return ""
    try:
        return _Translation(pattern).outside()
    except _Untranslatable:
        return ""


class _Untranslatable(Exception):
    pass


class _Translation:
    """RE2 syntax to JavaScript's (`v` flag), one construct at a time; anything unknown is `_Untranslatable`."""

    def __init__(self, pattern: str):
        self.p = pattern
        self.i = 0

    def outside(self) -> str:
        out: list[str] = []
        p = self.p
        while self.i < len(p):
            char = p[self.i]
            if char == "\\":
                out.append(self._escape(in_class=False))
            elif char == "[":
                out.append(self._char_class())
            elif char == "(":
                out.append(self._group_open())
            elif char == "{":
                quantifier = _QUANTIFIER.match(p, self.i)
                out.append(quantifier.group() if quantifier else "\\{")
                self.i = quantifier.end() if quantifier else self.i + 1
            elif char in "}]":
                out.append("\\" + char)
                self.i += 1
            else:
                out.append(char)
                self.i += 1
        return "".join(out)

    def _group_open(self) -> str:
        p, i = self.p, self.i
        if p.startswith("(?P<", i) or p.startswith("(?<", i):
            start = i + (4 if p.startswith("(?P<", i) else 3)
            end = p.index(">", start)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p[start:end]):
                raise _Untranslatable
            self.i = end + 1
            return "(?<" + p[start:end] + ">"
        if p.startswith("(?:", i):
            self.i += 3
            return "(?:"
        if p.startswith("(?", i):  # flags: (?i), (?s:...), ... JavaScript has no such thing
            raise _Untranslatable
        self.i += 1
        return "("

    def _escape(self, in_class: bool) -> str:
        p, i = self.p, self.i
        char = p[i + 1 : i + 2]
        self.i = i + 2
        if char in _SAME_ESCAPES:
            if in_class and char in "bB":  # \b in a class is a backspace to JavaScript, not to RE2
                raise _Untranslatable
            return "\\" + char
        if char == "s":
            return _PERL_SPACE if in_class else f"[{_PERL_SPACE}]"
        if char == "S" and not in_class:
            return f"[^{_PERL_SPACE}]"
        if char == "A" and not in_class:
            return "^"
        if char == "z" and not in_class:
            return "$"
        if char == "a":
            return "\\x07"
        if char == "x":
            brace = re.compile(r"\{([0-9A-Fa-f]{1,6})\}|([0-9A-Fa-f]{2})").match(p, i + 2)
            if brace is None:
                raise _Untranslatable
            self.i = brace.end()
            return "\\u{" + (brace.group(1) or brace.group(2)) + "}"
        if char in "pP":
            found = _UNICODE_CLASS.match(p, i)
            if found is None:
                raise _Untranslatable
            self.i = found.end()
            negated = (char == "P") != bool(found.group(3))
            name = found.group(2) or found.group(4)
            if name in _GENERAL_CATEGORIES:
                spelled = name
            elif name == "Any":
                return "[^]" if not negated and not in_class else _raise()
            elif name[0].isupper():
                spelled = "Script=" + name
            else:
                raise _Untranslatable
            return ("\\P{" if negated else "\\p{") + spelled + "}"
        if char == "Q":
            end = p.find("\\E", i + 2)
            literal = p[i + 2 :] if end == -1 else p[i + 2 : end]
            self.i = len(p) if end == -1 else end + 2
            return "".join(_literal(c, in_class) for c in literal)
        if char and not char.isalnum() and char.isascii():
            return _literal(char, in_class)
        raise _Untranslatable  # \C, octal and \0, \pN spelled otherwise, ...

    def _char_class(self) -> str:
        p = self.p
        self.i += 1
        out = ["["]
        if p.startswith("^", self.i):
            out.append("^")
            self.i += 1
        first = self.i
        atoms: list[str] = []  # the class's members as JavaScript; "-" joins two into a range
        while self.i < len(p):
            char = p[self.i]
            if char == "]" and self.i > first:
                self.i += 1
                return "".join(out + _join_ranges(atoms) + ["]"])
            if char == "\\":
                atoms.append(self._escape(in_class=True))
                continue
            posix = _CLASS_ATOM.match(p, self.i)
            if posix:
                if posix.group(1) or posix.group(2) not in _POSIX:
                    raise _Untranslatable
                atoms.append(_POSIX[posix.group(2)])
                self.i = posix.end()
                continue
            atoms.append("-" if char == "-" else _literal(char, in_class=True))
            self.i += 1
        raise _Untranslatable


def _raise() -> str:
    raise _Untranslatable


def _literal(char: str, in_class: bool) -> str:
    if char in _SYNTAX or (in_class and char in _IN_CLASS_ESCAPED):
        return "\\" + char
    return char


def _join_ranges(atoms: list[str]) -> list[str]:
    """Keep `-` between two single characters as a range, as RE2 reads it; a `-` first or last is itself."""
    out: list[str] = []
    i = 0
    ended_range = False
    while i < len(atoms):
        if atoms[i] != "-":
            out.append(atoms[i])
            i += 1
            ended_range = False
        elif i == 0 or i == len(atoms) - 1:
            out.append("\\-")
            i += 1
        elif not ended_range and _single(out[-1]) and _single(atoms[i + 1]) and atoms[i + 1] != "-":
            out += ["-", atoms[i + 1]]
            i += 2
            ended_range = True
        elif ended_range or not _single(out[-1]):  # RE2 reads a - that cannot make a range as itself
            out.append("\\-")
            i += 1
        else:
            raise _Untranslatable
    return out


_SINGLE = re.compile(r"[^\\]|\\[^A-Za-z0-9]|\\[ntrfv]|\\x07|\\u\{[0-9A-Fa-f]+\}", re.DOTALL)


def _single(atom: str) -> bool:
    """One character (as written in JavaScript), so it can be the end of a range."""
    return _SINGLE.fullmatch(atom) is not None


__all__ = ["PatternError", "compile_pattern", "html_pattern", "matches"]

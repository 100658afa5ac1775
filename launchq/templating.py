"""What `{{name}}` means in a queue config: finding template fields and rendering values into them.

A queue config is YAML or JSON text whose top level is a mapping. A template
field is a `{{name}}` placeholder in a value. `parse_config` reads the text
once and answers everything the Config tab and the launch form ask of it: the
data, where each field occurs, which macros it uses. Rendering comes in two
forms: `render_data` gives the typed data a resource receives (a placeholder
that is a whole value becomes the typed value, one inside longer text is
interpolated as text), and `render_text` gives the admin's own text with the
values put in, comments and layout kept, for people to read.

How the parse works: before the YAML or JSON parser sees the text, every
`{{...}}` is masked with private-use characters of the same length, so the
parser reads `InstanceType: {{aws_instance}}` like any other plain value and
every position it reports is still a position in the admin's text. Masks
inside comments vanish with the comments, so they never become fields.
No Django here: the agent imports this module on its own machine.
"""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

import yaml

from launchq.limits import MAX_FIELDS
from launchq.macros import MACRO, Lookup, fill_macros
from launchq.numbers import plain_number

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class Format(StrEnum):
    YAML = "yaml"
    JSON = "json"

    @property
    def label(self) -> str:
        return self.value.upper()


MAX_CONFIG_BYTES = 256 * 1024
MAX_VALUES = 50_000
MAX_DEPTH = 64

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_BRACES = re.compile(r"\{\{([^{}\n]*)\}\}|\{\{")
_FIELD_OPEN, _FIELD_FILL, _BAD_OPEN, _BAD_FILL, _UNCLOSED = "\ue000", "\ue001", "\ue002", "\ue003", "\ue004"
_RESERVED = re.compile("[\ue000-\ue004]")
_FIELD_MASK = re.compile("\ue000([A-Za-z0-9_-]+)\ue001+")
_BAD_MASK = re.compile("\ue002\ue003*|\ue004\ue004")
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_MASKED = re.compile("[\ue000-\ue004]")
_HUGE_NUMBER = re.compile(r"[0-9][0-9_]{4000,}")
_PROPERTIES = re.compile(r"(?:[&!][^ \t\r\n]*[ \t\r\n]+)+")

# --- errors ------------------------------------------------------------------

TOO_LARGE = "The config is {size:,} bytes of UTF-8; the limit is {limit:,} bytes ({kib} KiB)."
TOO_MANY_VALUES = "The config expands to more than {limit} values (YAML aliases?); that limit keeps the server responsive."
TOO_DEEP = "The config nests more than {limit} levels deep."
TOO_MANY_FIELDS = "The config has {count} template fields; a queue can have at most {limit}. This is field {number}."
NOT_MAPPING = "The top of the config must be a mapping of keys to values (like `key: value`), not {kind}."
SYNTAX = "{problem}"
BAD_TAG = "Tags that build objects are not allowed: {problem}"
RESERVED_CHARACTER = "The character U+{code:04X} is reserved by launchq and cannot appear in a config."
HUGE_NUMBER = "This number has more digits than launchq reads (at most 4300); write it as text, in quotes, if it is meant to be one."
DUPLICATE_KEY = "The key {key!r} appears twice in this {kind} (first on line {first}); only one would be kept, so remove or rename one."
PLACEHOLDER_IN_KEY = "Template fields belong in values, not in keys: {placeholder} is used as a key."
EMPTY_PLACEHOLDER = "{placeholder} is empty: write a field name between the braces, like {{{{aws_instance}}}}."
INVALID_NAME = "{placeholder} is not a valid template field name: use letters, digits, _ and -, starting with a letter or _."
UNCLOSED = "This {{ is never closed with }} on the same line."


class ConfigError(Exception):
    """A config that cannot be used, with the line and column (1-based) where that shows."""

    def __init__(self, code: str, message: str, line: int | None = None, column: int | None = None, path: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column
        self.path = path

    @property
    def where(self) -> str:
        if self.line is None:
            return ""
        return f"Line {self.line}, column {self.column}"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.line is not None else self.message


# --- what parsing gives ------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """One place a template field is used: `ResourceConfig.InstanceType`, line 3."""

    name: str
    path: str
    line: int
    column: int
    whole: bool


@dataclass(frozen=True)
class _Spot:
    """A string value in the source that holds placeholders: what `render_text` rewrites."""

    start: int
    end: int
    value: str
    style: str


@dataclass(frozen=True)
class ParsedConfig:
    text: str
    format: Format
    data: dict[str, Any]
    occurrences: tuple[Occurrence, ...]
    macros: tuple[str, ...]
    _spots: tuple[_Spot, ...]
    _masked: str = ""

    @cached_property
    def positions(self) -> Mapping[str, tuple[int, int]]:
        """Line and column of each scalar value by its path (read again when asked: only an error needs it)."""
        if not self.data:
            return {}
        lines = _Lines(self.text)
        if self.format is Format.YAML:
            loader = _Loader(self._masked)
            try:
                scalars = _walk_yaml(loader.get_single_node(), every=True)
            finally:
                loader.dispose()
        else:
            scalars = _scan_json(self._masked, every=True)
        found: dict[str, tuple[int, int]] = {}
        for scalar in scalars:
            if not scalar.is_key:
                found.setdefault(scalar.path, lines.position(scalar.start))
        return found

    @property
    def fields(self) -> list[str]:
        """Template field names in the order they first appear; the same name twice is one field."""
        return list(dict.fromkeys(o.name for o in self.occurrences))

    def by_name(self) -> dict[str, list[Occurrence]]:
        """Each field's occurrences, fields in the order they first appear (one pass, however many fields)."""
        found: dict[str, list[Occurrence]] = {}
        for o in self.occurrences:
            found.setdefault(o.name, []).append(o)
        return found

    def where(self, name: str) -> list[Occurrence]:
        return [o for o in self.occurrences if o.name == name]

    def holds_field(self, path: str) -> bool:
        """Whether the value at `path` holds a template field."""
        return any(o.path == path for o in self.occurrences)

    def get(self, path: str) -> Any:
        """The parsed value at a dotted path (`builder.accelerator.base_image`), or None."""
        node: Any = self.data
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


def parse_config(text: str, fmt: Format | str, *, strict_keys: bool = True) -> ParsedConfig:
    """Parse a queue config; raise `ConfigError` with a line and column if it cannot be used.

    `strict_keys=False` reads a key written twice the way YAML and JSON readers do (the last one
    wins) instead of refusing it, and does not count the template fields against MAX_FIELDS: for
    versions saved before those were refused, which must keep working.
    """
    fmt = Format(fmt)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError("too_large", TOO_LARGE.format(size=size, limit=MAX_CONFIG_BYTES, kib=MAX_CONFIG_BYTES // 1024))
    reserved = _RESERVED.search(text)
    if reserved:
        line, column = _Lines(text).position(reserved.start())
        raise ConfigError("reserved_character", RESERVED_CHARACTER.format(code=ord(reserved.group())), line, column)

    lines = _Lines(text)
    masked = _mask(text, fmt)
    if not text.strip() or (fmt is Format.YAML and _only_comments(text)):
        data, scalars = {}, []
    elif fmt is Format.YAML:
        data, scalars = _load_yaml(masked, text, lines, strict_keys)
    else:
        data, scalars = _load_json(masked, text, lines, strict_keys)
    if not isinstance(data, dict):
        raise ConfigError("not_mapping", NOT_MAPPING.format(kind=_kind(data)), 1, 1)

    occurrences: list[Occurrence] = []
    macros: list[str] = []
    spots: dict[int, _Spot] = {}
    for scalar in scalars:  # only those holding a placeholder, something like one, or a macro
        _check_masks(scalar, text, lines)
        macros.extend(m.group(1) for m in MACRO.finditer(scalar.value))
        found = list(_FIELD_MASK.finditer(scalar.value))
        if not found:
            continue
        whole = len(found) == 1 and found[0].span() == (0, len(scalar.value))
        in_source = list(_FIELD_MASK.finditer(masked, scalar.start, scalar.end))
        for i, match in enumerate(found):
            at = in_source[i].start() if len(in_source) == len(found) else scalar.start
            line, column = lines.position(at)
            occurrences.append(Occurrence(match.group(1), scalar.path, line, column, whole))
        spots.setdefault(scalar.start, _Spot(scalar.start, scalar.end, scalar.value, scalar.style))
    if strict_keys:
        _refuse_too_many_fields(occurrences)
    return ParsedConfig(
        text=text,
        format=fmt,
        data=data,
        occurrences=tuple(occurrences),
        macros=tuple(dict.fromkeys(macros)),
        _spots=tuple(sorted(spots.values(), key=lambda s: s.start)),
        _masked=masked,
    )


def _refuse_too_many_fields(occurrences: list[Occurrence]) -> None:
    first: dict[str, Occurrence] = {}
    for o in occurrences:
        first.setdefault(o.name, o)
    if len(first) > MAX_FIELDS:
        extra = list(first.values())[MAX_FIELDS]
        message = TOO_MANY_FIELDS.format(count=len(first), limit=MAX_FIELDS, number=MAX_FIELDS + 1)
        raise ConfigError("too_many_fields", message, extra.line, extra.column)


# --- rendering ---------------------------------------------------------------


def render_data(parsed: ParsedConfig, values: Mapping[str, Any], macros: Lookup | None = None) -> tuple[dict[str, Any], list[str]]:
    """The config as data with every field's value in, and (given a lookup) its macros filled.

    Only the admin's own text is searched for macros: a value a team member
    chose is put in as it is, so `${SECRET}` typed into a field stays that text.
    Returns the data and the names of macros the lookup could not fill.
    """
    missing: list[str] = []

    def string(s: str) -> Any:
        whole = _FIELD_MASK.fullmatch(s)
        if whole:
            return values[whole.group(1)]
        out, pos = [], 0
        for match in _FIELD_MASK.finditer(s):
            out.append(literal(s[pos : match.start()]))
            out.append(as_text(values[match.group(1)]))
            pos = match.end()
        out.append(literal(s[pos:]))
        return "".join(out)

    def literal(s: str) -> str:
        if macros is None or "${" not in s:
            return s
        filled, unfilled = fill_macros(s, macros)
        missing.extend(n for n in unfilled if n not in missing)
        return filled

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return string(node)
        if isinstance(node, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(parsed.data), missing


@dataclass(frozen=True)
class RenderedText:
    """The admin's text with values in; `marks` are the (start, end) spans of what was put in."""

    text: str
    marks: tuple[tuple[int, int], ...]

    def pieces(self) -> list[tuple[str, bool]]:
        """The text cut into (piece, is_marked) for highlighting."""
        out, pos = [], 0
        for start, end in self.marks:
            out.append((self.text[pos:start], False))
            out.append((self.text[start:end], True))
            pos = end
        out.append((self.text[pos:], False))
        return [p for p in out if p[0]]


def render_text(parsed: ParsedConfig, values: Mapping[str, Any]) -> RenderedText:
    """The admin's own text with the values in (typed where a whole value), comments kept.

    Macros stay as `${...}`: the agent fills them. Each rewritten value is
    checked by reading the result back; when the text form cannot say the same
    thing as `render_data` (rare YAML constructs), the data is written out plainly instead.
    """
    expected, _ = render_data(parsed, values)
    out: list[str] = []
    marks: list[tuple[int, int]] = []
    pos = 0
    length = 0
    for spot in parsed._spots:
        start = spot.start
        if parsed.format is Format.YAML:
            prefix = _PROPERTIES.match(parsed.text, start, spot.end)
            if prefix:
                start = prefix.end()
        pieces = _pieces(spot.value, values)
        if parsed.format is Format.JSON:
            new, spans = _json_literal(pieces)
        else:
            # A plain value that already held a flow indicator ({ } [ ] ,) cannot be inside a flow collection.
            in_block = spot.style == "" and any(c in _FIELD_MASK.sub("", spot.value) for c in ",[]{}")
            new, spans = _yaml_literal(pieces, spot.style, in_block)
            if spot.style in "|>" and parsed.text[spot.start : spot.end].endswith("\n"):
                new += "\n"
        out.append(parsed.text[pos:start])
        length += start - pos
        marks.extend((length + a, length + b) for a, b in spans)
        out.append(new)
        length += len(new)
        pos = spot.end
    out.append(parsed.text[pos:])
    text = "".join(out)
    if _load_plain(text, parsed.format) != expected:
        return RenderedText(dump_data(expected, parsed.format), ())
    return RenderedText(text, tuple(marks))


def dump_data(data: Any, fmt: Format | str) -> str:
    """Data written out as YAML or JSON (for rendered data, which has no comments to keep)."""
    if Format(fmt) is Format.JSON:
        return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def as_text(value: Any) -> str:
    """A value as it reads inside longer text: `2`, `0.5`, `0.00001`, `ml.m4.xlarge`."""
    return plain_number(value)


# --- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class _Scalar:
    path: str
    value: str
    start: int
    end: int
    style: str
    is_key: bool


class _Lines:
    """Line and column of an index into the text; the line starts are found on the first question."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def starts(self) -> list[int]:
        lengths = map(operator.add, map(len, self.text.split("\n")), itertools.repeat(1))
        return list(itertools.accumulate(lengths, initial=0))

    def position(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, index)
        return line, index - self.starts[line - 1] + 1


def _mask(text: str, fmt: Format) -> str:
    """Mask every `{{...}}` with same-length private-use characters (see the module's docstring)."""
    if "{{" not in text:
        return text
    in_string = _JsonStrings(text) if fmt is Format.JSON else None

    def replace(match: re.Match[str]) -> str:
        size = len(match.group(0))
        if match.group(1) is None:
            return _UNCLOSED * 2
        name = match.group(1).strip(" \t")
        if not NAME.match(name):
            return _BAD_OPEN + _BAD_FILL * (size - 1)
        if in_string is not None and not in_string.holds(match.start()):
            return '"' + _FIELD_OPEN + name + _FIELD_FILL * (size - len(name) - 3) + '"'
        return _FIELD_OPEN + name + _FIELD_FILL * (size - len(name) - 1)

    return _BRACES.sub(replace, text)


class _JsonStrings:
    """Whether an index is inside a JSON string, asked in increasing order: one pass over each line's strings.

    JSON strings never span lines, so each line is read from its start, and only up to the last index asked.
    """

    def __init__(self, text: str):
        self.text = text
        self.line_start = -1
        self.cursor = 0

    def holds(self, index: int) -> bool:
        line_start = self.text.rfind("\n", 0, index) + 1
        if line_start != self.line_start:
            self.line_start = self.cursor = line_start
        for match in _JSON_STRING.finditer(self.text, self.cursor):
            if match.end() <= index:
                self.cursor = match.end()
                continue
            return match.start() < index
        return False


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _load_yaml(masked: str, text: str, lines: _Lines, strict_keys: bool = True) -> tuple[Any, list[_Scalar]]:
    loader = _Loader(masked)

    def key_of(node: yaml.ScalarNode) -> Any:
        """The key as YAML reads it (`yes` and `true` are one key), or its text when it cannot be read."""
        if node.tag == _STR_TAG:  # most keys: the text is the key
            return ("str", node.value)
        try:
            key = loader.construct_object(node, deep=True)
            hash(key)
        except Exception:  # a bad tag or a huge number: refused below, when the document is built
            return (node.tag, node.value)
        return (type(key).__name__, key)

    try:
        node = loader.get_single_node()
        if node is None:
            return {}, []
        scalars = _walk_yaml(node, key_of if strict_keys else None)
        return loader.construct_document(node), scalars
    except yaml.constructor.ConstructorError as error:
        raise _marked("bad_tag", BAD_TAG, error, text, lines) from None
    except yaml.MarkedYAMLError as error:
        raise _marked("syntax", SYNTAX, error, text, lines) from None
    except yaml.reader.ReaderError as error:
        line, column = lines.position(error.position)
        raise ConfigError("syntax", f"unacceptable character #x{error.character:04x}", line, column) from None
    except (yaml.YAMLError, RecursionError) as error:
        raise ConfigError("syntax", str(error)) from None
    except ValueError:  # Python's guard against numbers of thousands of digits
        raise _huge_number(masked, lines) from None
    finally:
        loader.dispose()


_STR_TAG = "tag:yaml.org,2002:str"
# A scalar that matters to the parse: it holds a placeholder (or something like one), or a macro. JSON text
# with an escape (\u0024) is read first, as it could spell either.
_INTERESTING = re.compile("[\ue000-\ue004]|\\$\\{")
_INTERESTING_JSON = re.compile("[\ue000-\ue004]|\\$\\{|\\\\u")


def _walk_yaml(root: yaml.Node, key_of=None, every: bool = False) -> list[_Scalar]:
    """The scalars that matter (every scalar with `every`), with path and source span, in document order.

    Checks the limits on the way (values, counting each use of an alias; depth). With `key_of` (how a key
    reads), a mapping that has the same key twice is refused. Paths are written out only for containers
    and the scalars returned, so the walk costs little more per node than visiting it.
    """
    scalars: list[_Scalar] = []
    interesting = _INTERESTING.search
    Scalar, Sequence, Mapping_ = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
    # (node, parent path, this node's step from it, is_key, depth)
    stack: list[tuple[yaml.Node, str, str | int | None, bool, int]] = [(root, "", None, False, 0)]
    count = 0
    while stack:
        node, parent, step, is_key, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError("too_many_values", TOO_MANY_VALUES.format(limit=MAX_VALUES))
        if depth > MAX_DEPTH:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            raise ConfigError("too_deep", TOO_DEEP.format(limit=MAX_DEPTH), line, column)
        kind = type(node)
        if kind is Scalar:
            if every or interesting(node.value):
                path = _step(parent, step)
                scalars.append(_Scalar(path, node.value, node.start_mark.index, node.end_mark.index, node.style or "", is_key))
            continue
        path = _step(parent, step)
        if kind is Sequence:
            items = node.value
            for i in range(len(items) - 1, -1, -1):
                stack.append((items[i], path, i, is_key, depth + 1))
        elif kind is Mapping_:
            if key_of is not None:
                _refuse_duplicate_yaml_keys(node, path, key_of)
            for key, value in reversed(node.value):
                label = key.value if type(key) is Scalar else "?"
                stack.append((value, path, label, is_key, depth + 1))
                stack.append((key, path, None, True, depth + 1))
    return scalars


def _step(parent: str, step: str | int | None) -> str:
    """`a.b` + key `c` is `a.b.c`; `a` + index 0 is `a[0]`; a key's own step is None (it sits at its mapping's path)."""
    if step is None:
        return parent
    if type(step) is int:
        return f"{parent}[{step}]"
    return f"{parent}.{step}" if parent else step


def _refuse_duplicate_yaml_keys(node: yaml.MappingNode, path: str, key_of) -> None:
    seen: dict[Any, yaml.ScalarNode] = {}
    for key, _ in node.value:
        if type(key) is not yaml.ScalarNode or key.tag == "tag:yaml.org,2002:merge" or _MASKED.search(key.value):
            continue
        identity = key_of(key)
        first = seen.get(identity)
        if first is not None:
            line, column = key.start_mark.line + 1, key.start_mark.column + 1
            message = DUPLICATE_KEY.format(key=key.value, first=first.start_mark.line + 1, kind="mapping")
            raise ConfigError("duplicate_key", message, line, column, path)
        seen[identity] = key


def _huge_number(masked: str, lines: _Lines) -> ConfigError:
    found = _HUGE_NUMBER.search(masked)
    line, column = lines.position(found.start()) if found else (None, None)
    return ConfigError("too_large_number", HUGE_NUMBER, line, column)


def _load_json(masked: str, text: str, lines: _Lines, strict_keys: bool = True) -> tuple[Any, list[_Scalar]]:
    try:
        data = json.loads(masked)
    except json.JSONDecodeError as error:
        bad = _bad_mask_near(masked, error.pos)
        if bad is not None:
            raise _placeholder_error(text, bad, lines) from None
        raise ConfigError("syntax", error.msg, error.lineno, error.colno) from None
    except RecursionError:
        raise ConfigError("too_deep", TOO_DEEP.format(limit=MAX_DEPTH)) from None
    except ValueError:  # Python's guard against numbers of thousands of digits
        raise _huge_number(masked, lines) from None
    return data, _scan_json(masked, lines=lines, strict_keys=strict_keys)


# The scan's tokens. A string is "plain" when it holds nothing the parse looks for (no placeholder mask, no
# `${`, no \\u escape that could spell one); plain scalars after a key, and runs of plain items in an array,
# are swallowed with what comes before them, so most of a config passes through the regex engine alone.
_PLAIN_STRING = '"[^"\\\\\ue000-\ue004$]*(?:(?:\\$(?!\\{)|\\\\[^u])[^"\\\\\ue000-\ue004$]*)*"'  # "unrolled": runs of plain characters
_PLAIN_SCALAR = f"(?:{_PLAIN_STRING}|[-+0-9.eE]+|true|false|null)"
_ANY_STRING = '"[^"\\\\]*(?:\\\\.[^"\\\\]*)*"'
_JSON_SCAN = re.compile(
    "[\\s,:]*(?:"  # what lies between tokens, taken in one run (sre would try every alternative at each space)
    f"({_PLAIN_STRING})\\s*:(?:\\s*(?:{_PLAIN_SCALAR}(?=\\s*[,}}])|([{{[])))?"  # 1 a plain key, with its plain value or 2 its opening bracket
    f"|({_ANY_STRING})\\s*:"  # 3 another key
    f"|(?:{_PLAIN_SCALAR}\\s*,\\s*)+|{_PLAIN_SCALAR}(?=\\s*\\])"  # plain items of an array
    f"|({_ANY_STRING})"  # 4 a string value to look at
    "|([{[])"  # 5 an opening bracket
    "|([]}](?:\\s*[]}])*)"  # 6 closing brackets
    ")"
)
# For every value's position (only asked after an error): each string is a token, with the same groups.
_JSON_EVERY = re.compile(f"[\\s,:]*(?:((?!))((?!))?|({_ANY_STRING})\\s*:|({_ANY_STRING})|([{{[])|([]}}]))")
_JSON_ITEMS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],]')
_KEY, _KEY_OPEN, _OTHER_KEY, _STRING, _OPEN, _CLOSE = 1, 2, 3, 4, 5, 6
_ANY_KEY = frozenset((_KEY, _KEY_OPEN, _OTHER_KEY))


class _JsonFrame:
    """An open object or array while scanning: enough to write its path, and its children's, when asked."""

    __slots__ = ("is_object", "key", "seen", "parent", "start", "step", "_path", "counted_to", "index")

    def __init__(self, is_object: bool, parent: _JsonFrame | None, start: int, step: str | int | None):
        self.is_object = is_object
        self.key = ""  # the raw text of the latest key, quotes included (objects)
        self.seen: dict[str, int] = {}  # the keys so far (as read), and where each is
        self.parent = parent
        self.start = start  # just after the bracket
        self.step = step  # the raw key this container is the value of, or its start in the parent array
        self._path: str | None = None
        self.counted_to = start  # arrays: items counted up to here ...
        self.index = 0  # ... make this index

    def path(self, masked: str) -> str:
        if self._path is None:
            if self.parent is None:
                self._path = ""
            elif self.parent.is_object:
                self._path = _step(self.parent.path(masked), _json_key(self.step))
            else:
                self._path = _step(self.parent.path(masked), self.parent.index_at(self.step, masked))
        return self._path

    def child(self, masked: str, at: int) -> str:
        """The path of this container's value that starts at `at` (its latest key's, in an object)."""
        if self.is_object:
            return _step(self.path(masked), _json_key(self.key))
        return _step(self.path(masked), self.index_at(at, masked))

    def index_at(self, at: int, masked: str) -> int:
        """The index of the item starting at `at`: the commas at this level since the last count (positions only grow)."""
        depth = 0
        for match in _JSON_ITEMS.finditer(masked, self.counted_to, at):
            char = match.group()[0]
            if char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
            elif char == "," and depth == 0:
                self.index += 1
        self.counted_to = at
        return self.index


def _json_key(raw: str) -> str:
    return json.loads(raw) if "\\" in raw else raw[1:-1]


def _scan_json(masked: str, *, lines: _Lines | None = None, strict_keys: bool = False, every: bool = False) -> list[_Scalar]:
    """The strings that matter (every value string with `every`) of valid JSON, with path and span, in order.

    One pass with a regex that passes over plain values by itself (see _JSON_SCAN): per token a comparison
    or two; paths are written only for the strings returned. Refuses nesting deeper than MAX_DEPTH. (The
    values are not counted: unlike YAML's, which aliases can multiply, they are bounded by the size limit.)
    """
    scalars: list[_Scalar] = []
    interesting = _INTERESTING_JSON.search
    frames: list[_JsonFrame] = []
    top: _JsonFrame | None = None
    for match in (_JSON_EVERY if every else _JSON_SCAN).finditer(masked):
        kind = match.lastindex
        if strict_keys and kind in _ANY_KEY:  # any key: the same one twice in an object is refused
            group = _KEY if kind == _KEY_OPEN else kind
            key = match.group(group)
            if "\\" in key:
                key = _json_key(key)
            if key in top.seen:
                raise _repeated_json_key(key, top.seen[key], match.start(group), lines)
            top.seen[key] = match.start(group)
        if kind == _KEY:
            top.key = match.group(_KEY)
        elif kind == _KEY_OPEN or kind == _OPEN:
            at = match.start(kind)
            if len(frames) >= MAX_DEPTH:
                line, column = lines.position(at) if lines else (None, None)
                raise ConfigError("too_deep", TOO_DEEP.format(limit=MAX_DEPTH), line, column)
            if kind == _KEY_OPEN:
                step = top.key = match.group(_KEY)
            else:
                step = None if top is None else (top.key if top.is_object else at)
            top = _JsonFrame(match.group(kind) == "{", top, match.end(), step)
            frames.append(top)
        elif kind == _CLOSE:
            token = match.group(_CLOSE)
            for _ in range(token.count("]") + token.count("}")):
                frames.pop()
            top = frames[-1] if frames else None
        elif kind == _STRING:
            token = match.group(_STRING)
            if every or interesting(token):
                start = match.start(_STRING)
                scalars.append(_Scalar(top.child(masked, start) if top else "", _json_key(token), start, match.end(), '"', False))
        elif kind == _OTHER_KEY:
            key = top.key = match.group(_OTHER_KEY)
            if every or interesting(key):
                start = match.start(_OTHER_KEY)
                scalars.append(_Scalar(top.path(masked), _json_key(key), start, start + len(key), '"', True))
        # else: plain items of an array, passed over
    return scalars


def _repeated_json_key(key: str, first: int, again: int, lines: _Lines | None) -> ConfigError:
    line, column = lines.position(again) if lines else (None, None)
    first_line = lines.position(first)[0] if lines else "?"
    return ConfigError("duplicate_key", DUPLICATE_KEY.format(key=key, first=first_line, kind="object"), line, column)


def _check_masks(scalar: _Scalar, text: str, lines: _Lines) -> None:
    """Raise for a placeholder in a key, or anything that looks like a placeholder and is not one."""
    if _BAD_MASK.search(scalar.value):
        bad = [m for m in _BRACES.finditer(text, scalar.start, scalar.end) if m.group(1) is None or not NAME.match(m.group(1).strip(" \t"))]
        raise _placeholder_error(text, bad[0].start() if bad else scalar.start, lines)
    field = _FIELD_MASK.search(scalar.value)
    if field and scalar.is_key:
        match = _BRACES.search(text, scalar.start, scalar.end)
        at = match.start() if match else scalar.start
        line, column = lines.position(at)
        shown = match.group(0) if match else "{{" + field.group(1) + "}}"
        raise ConfigError("placeholder_in_key", PLACEHOLDER_IN_KEY.format(placeholder=shown), line, column)


def _placeholder_error(text: str, at: int, lines: _Lines) -> ConfigError:
    line, column = lines.position(at)
    match = _BRACES.match(text, at)
    if match is None or match.group(1) is None:
        return ConfigError("unclosed_placeholder", UNCLOSED, line, column)
    if not match.group(1).strip(" \t"):
        return ConfigError("empty_placeholder", EMPTY_PLACEHOLDER.format(placeholder=match.group(0)), line, column)
    return ConfigError("invalid_name", INVALID_NAME.format(placeholder=match.group(0)), line, column)


def _bad_mask_near(masked: str, index: int) -> int | None:
    """A bad placeholder on the line of a parse error is the likelier culprit; its position."""
    start = masked.rfind("\n", 0, index) + 1
    end = masked.find("\n", index)
    bad = _BAD_MASK.search(masked, start, end if end != -1 else len(masked))
    return bad.start() if bad else None


def _marked(code: str, template: str, error: yaml.MarkedYAMLError, text: str, lines: _Lines) -> ConfigError:
    mark = error.problem_mark or error.context_mark
    if mark is not None and code == "syntax":
        bad = _bad_mask_near(_mask(text, Format.YAML), mark.index)
        if bad is not None:
            return _placeholder_error(text, bad, lines)
    problem = (error.problem or error.context or "").strip()
    if mark is None:
        return ConfigError(code, template.format(problem=problem))
    return ConfigError(code, template.format(problem=problem), mark.line + 1, mark.column + 1)


def _kind(data: Any) -> str:
    if data is None:
        return "an empty document"
    if isinstance(data, list):
        return "a list"
    return f"a single value ({type(data).__name__})"


def _load_plain(text: str, fmt: Format) -> Any:
    try:
        if fmt is Format.JSON:
            return json.loads(text)
        return yaml.load(text, Loader=_Loader) or {}
    except (ValueError, yaml.YAMLError, RecursionError):
        return None


# --- writing values into text ------------------------------------------------


def _pieces(value: str, values: Mapping[str, Any]) -> list[tuple[Any, bool]]:
    """A masked string cut into (literal, False) and (field value, True) pieces."""
    whole = _FIELD_MASK.fullmatch(value)
    if whole:
        return [(values[whole.group(1)], True)]
    out: list[tuple[Any, bool]] = []
    pos = 0
    for match in _FIELD_MASK.finditer(value):
        out.append((value[pos : match.start()], False))
        out.append((as_text(values[match.group(1)]), True))
        pos = match.end()
    out.append((value[pos:], False))
    return [p for p in out if p[0] != ""]


def _join(parts: list[tuple[str, bool]], opener: str = "", closer: str = "") -> tuple[str, list[tuple[int, int]]]:
    text, spans = opener, []
    for part, marked in parts:
        if marked:
            spans.append((len(text), len(text) + len(part)))
        text += part
    return text + closer, spans


def _json_literal(pieces: list[tuple[Any, bool]]) -> tuple[str, list[tuple[int, int]]]:
    if len(pieces) == 1 and pieces[0][1] and not isinstance(pieces[0][0], str):
        text = json.dumps(pieces[0][0])
        return text, [(0, len(text))]
    return _join([(json.dumps(str(p), ensure_ascii=False)[1:-1], m) for p, m in pieces], '"', '"')


def _yaml_literal(pieces: list[tuple[Any, bool]], style: str, in_block: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """YAML for a rewritten value, in the quoting the admin used where it can say the same thing."""
    if len(pieces) == 1 and pieces[0][1] and not isinstance(pieces[0][0], str):
        text = _yaml_number(pieces[0][0])
        return text, [(0, len(text))]
    whole = "".join(str(p) for p, _ in pieces)
    if style == "" and _plain_safe(whole, in_block=in_block):
        return _join([(str(p), m) for p, m in pieces])
    if style == "'" and "\n" not in whole:
        return _join([(str(p).replace("'", "''"), m) for p, m in pieces], "'", "'")
    return _join([(_yaml_escape(str(p)), m) for p, m in pieces], '"', '"')


def _yaml_number(value: int | float) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    text = repr(value).lower()
    if "e" in text and "." not in text:
        text = text.replace("e", ".0e", 1)
    return text


_PLAIN_UNSAFE = re.compile(r"^[-?:,\[\]{}#&*!|>'\"%@`\s]|: |:$| #|\s$|[\n\r\t]")
_FLOW_INDICATOR = re.compile(r"[,\[\]{}]")


def _plain_safe(text: str, in_block: bool = False) -> bool:
    if not text or _PLAIN_UNSAFE.search(text) or _RESERVED.search(text):
        return False
    if not in_block and _FLOW_INDICATOR.search(text):
        return False
    try:
        return yaml.load(text, Loader=_Loader) == text
    except yaml.YAMLError:
        return False


_YAML_PRINTABLE = re.compile("[\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _yaml_escape(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif _YAML_PRINTABLE.match(ch) and ch != "\x85":
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)

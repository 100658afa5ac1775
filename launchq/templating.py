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
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

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
_JSON_KEY_AFTER = re.compile(r"[ \t\r\n]*:")
_JSON_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{}\[\]]')
_MASKED = re.compile("[\ue000-\ue004]")
_HUGE_NUMBER = re.compile(r"[0-9][0-9_]{4000,}")
_PROPERTIES = re.compile(r"(?:[&!][^ \t\r\n]*[ \t\r\n]+)+")

# --- errors ------------------------------------------------------------------

TOO_LARGE = "The config is {size:.0f} KiB; the limit is {limit} KiB."
TOO_MANY_VALUES = "The config expands to more than {limit} values (YAML aliases?); that limit keeps the server responsive."
TOO_DEEP = "The config nests more than {limit} levels deep."
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
    positions: Mapping[str, tuple[int, int]]
    _spots: tuple[_Spot, ...]

    @property
    def fields(self) -> list[str]:
        """Template field names in the order they first appear; the same name twice is one field."""
        return list(dict.fromkeys(o.name for o in self.occurrences))

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
    wins) instead of refusing it: for versions saved before that was refused, which must keep working.
    """
    fmt = Format(fmt)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError("too_large", TOO_LARGE.format(size=size / 1024, limit=MAX_CONFIG_BYTES // 1024))
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
    positions: dict[str, tuple[int, int]] = {}
    for scalar in scalars:
        if not scalar.is_key:
            positions.setdefault(scalar.path, lines.position(scalar.start))
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
    return ParsedConfig(
        text=text,
        format=fmt,
        data=data,
        occurrences=tuple(occurrences),
        macros=tuple(dict.fromkeys(macros)),
        positions=positions,
        _spots=tuple(sorted(spots.values(), key=lambda s: s.start)),
    )


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
    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def position(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, index)
        return line, index - self.starts[line - 1] + 1


def _mask(text: str, fmt: Format) -> str:
    """Mask every `{{...}}` with same-length private-use characters (see the module's docstring)."""
    in_string = _json_string_spans(text) if fmt is Format.JSON else None

    def replace(match: re.Match[str]) -> str:
        size = len(match.group(0))
        if match.group(1) is None:
            return _UNCLOSED * 2
        name = match.group(1).strip(" \t")
        if not NAME.match(name):
            return _BAD_OPEN + _BAD_FILL * (size - 1)
        if in_string is not None and not _inside(in_string, match.start()):
            return '"' + _FIELD_OPEN + name + _FIELD_FILL * (size - len(name) - 3) + '"'
        return _FIELD_OPEN + name + _FIELD_FILL * (size - len(name) - 1)

    return _BRACES.sub(replace, text)


def _json_string_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _JSON_STRING.finditer(text)]


def _inside(spans: list[tuple[int, int]], index: int) -> bool:
    i = bisect.bisect_right(spans, (index, math.inf)) - 1
    return i >= 0 and spans[i][0] < index < spans[i][1]


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _load_yaml(masked: str, text: str, lines: _Lines, strict_keys: bool = True) -> tuple[Any, list[_Scalar]]:
    loader = _Loader(masked)

    def key_of(node: yaml.ScalarNode) -> Any:
        """The key as YAML reads it (`yes` and `true` are one key), or its text when it cannot be read."""
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


def _walk_yaml(root: yaml.Node, key_of=None) -> list[_Scalar]:
    """Every string scalar with its path and source span, in document order, within the limits.

    With `key_of` (how a key reads), a mapping that has the same key twice is refused.
    """
    scalars: list[_Scalar] = []
    stack: list[tuple[yaml.Node, str, bool, int]] = [(root, "", False, 0)]
    count = 0
    while stack:
        node, path, is_key, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError("too_many_values", TOO_MANY_VALUES.format(limit=MAX_VALUES))
        if depth > MAX_DEPTH:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            raise ConfigError("too_deep", TOO_DEEP.format(limit=MAX_DEPTH), line, column)
        if isinstance(node, yaml.ScalarNode):
            scalars.append(_Scalar(path, node.value, node.start_mark.index, node.end_mark.index, node.style or "", is_key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in reversed(list(enumerate(node.value))):
                stack.append((item, f"{path}[{i}]", is_key, depth + 1))
        elif isinstance(node, yaml.MappingNode):
            if key_of is not None:
                _refuse_duplicate_yaml_keys(node, path, key_of)
            for key, value in reversed(node.value):
                label = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.append((value, f"{path}.{label}" if path else label, is_key, depth + 1))
                stack.append((key, path, True, depth + 1))
    return scalars


def _refuse_duplicate_yaml_keys(node: yaml.MappingNode, path: str, key_of) -> None:
    seen: dict[Any, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge" or _MASKED.search(key.value):
            continue
        line, column = key.start_mark.line + 1, key.start_mark.column + 1
        identity = key_of(key)
        if identity in seen:
            raise ConfigError("duplicate_key", DUPLICATE_KEY.format(key=key.value, first=seen[identity], kind="mapping"), line, column, path)
        seen[identity] = line


def _huge_number(masked: str, lines: _Lines) -> ConfigError:
    found = _HUGE_NUMBER.search(masked)
    line, column = lines.position(found.start()) if found else (None, None)
    return ConfigError("too_large_number", HUGE_NUMBER, line, column)


class _DuplicateJsonKey(Exception):
    pass


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _DuplicateJsonKey
    return data


def _duplicate_json_key(masked: str, lines: _Lines) -> ConfigError:
    """Where the first repeated key of a JSON object is, found by following the objects' nesting."""
    stack: list[dict[str, int] | None] = []
    for match in _JSON_TOKEN.finditer(masked):
        token = match.group(0)
        if token in "{[":
            stack.append({} if token == "{" else None)
        elif token in "}]":
            stack.pop()
        elif stack and stack[-1] is not None and _JSON_KEY_AFTER.match(masked, match.end()):
            key = json.loads(token)
            line, column = lines.position(match.start())
            if key in stack[-1]:
                return ConfigError("duplicate_key", DUPLICATE_KEY.format(key=key, first=stack[-1][key], kind="object"), line, column)
            stack[-1][key] = line
    return ConfigError("duplicate_key", "A key appears twice in one object; only one would be kept, so remove or rename one.")


def _load_json(masked: str, text: str, lines: _Lines, strict_keys: bool = True) -> tuple[Any, list[_Scalar]]:
    try:
        data = json.loads(masked, object_pairs_hook=_no_duplicate_pairs if strict_keys else None)
    except _DuplicateJsonKey:
        raise _duplicate_json_key(masked, lines) from None
    except json.JSONDecodeError as error:
        bad = _bad_mask_near(masked, error.pos)
        if bad is not None:
            raise _placeholder_error(text, bad, lines) from None
        raise ConfigError("syntax", error.msg, error.lineno, error.colno) from None
    except RecursionError:
        raise ConfigError("too_deep", TOO_DEEP.format(limit=MAX_DEPTH)) from None
    except ValueError:  # Python's guard against numbers of thousands of digits
        raise _huge_number(masked, lines) from None

    tokens = []
    for match in _JSON_STRING.finditer(masked):
        is_key = bool(_JSON_KEY_AFTER.match(masked, match.end()))
        tokens.append((match.start(), match.end(), is_key))
    keys = [(s, e) for s, e, k in tokens if k]
    values = iter([(s, e) for s, e, k in tokens if not k])

    scalars = [_Scalar("", json.loads(masked[s:e]), s, e, '"', True) for s, e in keys]
    for path, string in _walk_json(data):
        for start, end in values:
            if json.loads(masked[start:end]) == string:
                scalars.append(_Scalar(path, string, start, end, '"', False))
                break
    return data, scalars


def _walk_json(root: Any) -> list[tuple[str, str]]:
    strings: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    count = 0
    while stack:
        node, path, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError("too_many_values", TOO_MANY_VALUES.format(limit=MAX_VALUES))
        if depth > MAX_DEPTH:
            raise ConfigError("too_deep", TOO_DEEP.format(limit=MAX_DEPTH))
        if isinstance(node, str):
            strings.append((path, node))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else k, depth + 1) for k, v in reversed(node.items()))
    return strings


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

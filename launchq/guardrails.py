"""Template field definitions and the one validator behind every launch path.

A `Field` is what an admin defines on a tile: a type (String, Integer, Float)
and its guardrails. `define_field` turns a tile's raw inputs into a `Field` and
checks that its guardrails agree with each other; `check_values` checks the
values a team member chose, for the launch form, the API, the CLI and the
`wandb` client alike. Every failure is a `Problem` with the field, a
machine-readable code, the bound it broke and the value it got.
No Django here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from launchq.characters import describe, unwanted_character
from launchq.limits import MAX_FIELDS, MAX_UNKNOWN_SHOWN
from launchq.numbers import MAX_NUMBER_CHARS, NON_FINITE_TEXT, parse_float, parse_integer, plain_number
from launchq.patterns import PatternError, compile_pattern, matches

MAX_TEXT_LENGTH = 4096
MAX_ALLOWED_VALUES = 200
MAX_DESCRIPTION_LENGTH = 2000
MAX_PATTERN_LENGTH = 500

_EDGE_SPACE = " \t\r\n"


class FieldType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"

    @property
    def label(self) -> str:
        return self.value.capitalize()


Value = str | int | float


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType = FieldType.STRING
    description: str = ""
    allowed: tuple[str, ...] = ()
    default: Value | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    pattern: str = ""
    max_length: int | None = None

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def is_number(self) -> bool:
        return self.type in (FieldType.INTEGER, FieldType.FLOAT)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        data["allowed"] = list(self.allowed)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Field:
        return cls(
            name=data["name"],
            type=FieldType(data.get("type", "string")),
            description=data.get("description", ""),
            allowed=tuple(data.get("allowed", ())),
            default=data.get("default"),
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            pattern=data.get("pattern", ""),
            max_length=data.get("max_length"),
        )


@dataclass(frozen=True)
class Problem:
    """One thing wrong, in the same shape on every path.

    `field` is the template field's name ("" for the config as a whole),
    `attribute` the part of a definition that is wrong (minimum, default, ...)
    when an admin's tile is at fault, `bound` the limit that was broken.
    """

    field: str
    code: str
    message: str
    bound: Any = None
    value: Any = None
    attribute: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "") or k in ("field", "code")}


class GuardrailError(Exception):
    """Raised with every problem found, never just the first."""

    def __init__(self, problems: Sequence[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)


# --- messages, next to the checks that use them ------------------------------

REQUIRED = "{field} is required: this field has no default."
UNKNOWN_FIELD = "{field} is not a template field of this queue; only its template fields can be set."
MORE_UNKNOWN = "…and {count} more names that are not template fields of this queue."
TOO_MANY_VALUES = "A launch can set at most {bound} values (this one sets {count}); only the queue's template fields can be set."
NOT_TEXT = "{field} must be text (got {value!r})."
NOT_INTEGER = "{field} must be a whole number written with the digits 0-9, like 3 (got {value!r})."
NOT_NUMBER = "{field} must be a number written with the digits 0-9, like 2.5 (got {value!r})."
NOT_FINITE = "{field} must be a finite number (got {value!r})."
NUMBER_TOO_LONG = "{field} must be a number written in at most {bound} characters (got {length})."
BELOW_MINIMUM = "{field} must be at least {bound} (got {value})."
ABOVE_MAXIMUM = "{field} must be at most {bound} (got {value})."
NOT_ALLOWED = "{field} must be one of {allowed} (got {value!r})."
NO_MATCH = "{field} must match the pattern {bound} (got {value!r})."
PATTERN_UNUSABLE = (
    "{field} cannot be checked: its pattern {bound} was saved before launchq ran patterns with RE2, which cannot run it "
    "({reason}). Leave the field empty to use its default, or ask a team admin to rewrite the pattern on the Config tab."
)
TOO_LONG = "{field} must be at most {bound} characters long (got {length})."
CONTROL = "{field} contains {char}; remove it."

TYPE_INVALID = "Choose String, Integer or Float."
BOUND_NOT_INTEGER = "The {attribute} of an Integer must be a whole number, like 3 (got {value!r})."
BOUND_NOT_NUMBER = "The {attribute} must be a number, like 2.5 (got {value!r})."
BOUND_NOT_FINITE = "The {attribute} must be a finite number (got {value!r})."
MIN_ABOVE_MAX = "The minimum ({value}) is above the maximum ({bound})."
DEFAULT_BELOW_MIN = "The default ({value}) is below the minimum ({bound})."
DEFAULT_ABOVE_MAX = "The default ({value}) is above the maximum ({bound})."
DEFAULT_NOT_ALLOWED = "The default {value!r} is not one of the allowed values."
DEFAULT_NO_MATCH = "The default {value!r} does not match the pattern."
DEFAULT_TOO_LONG = "The default is longer than the maximum length ({bound})."
ALLOWED_EMPTY = "An allowed value cannot be empty."
ALLOWED_DUPLICATE = "{value!r} is in the allowed values twice."
ALLOWED_TOO_MANY = "A field can have at most {bound} allowed values."
ALLOWED_TOO_LONG = "An allowed value can be at most {bound} characters long."
PATTERN_INVALID = "The pattern is not a regular expression launchq can run (RE2 syntax): {reason}."
PATTERN_TOO_LONG = "The pattern can be at most {bound} characters long."
MAX_LENGTH_INVALID = "The maximum length must be a whole number from 1 to {bound} (got {value!r})."
DESCRIPTION_TOO_LONG = "The description can be at most {bound} characters long."
DEFINITION_CONTROL = "The {attribute} contains {char}; remove it."


# --- defining a field (the admin's tile) -------------------------------------


def define_field(
    name: str,
    type: str,
    *,
    description: str = "",
    allowed: Iterable[str] = (),
    default: str = "",
    minimum: str = "",
    maximum: str = "",
    pattern: str = "",
    max_length: str = "",
) -> Field:
    """Build a `Field` from a tile's raw text inputs; raise `GuardrailError` if they disagree.

    Empty inputs mean "not set". Constraints that do not belong to the type are
    dropped (a Float has no allowed values; a String with allowed values has no
    pattern), so switching a tile's type never leaves hidden rules behind.
    """
    problems: list[Problem] = []

    def problem(attribute: str, code: str, message: str, **kw: Any) -> None:
        shown = {k: plain_number(v) if isinstance(v, float) else v for k, v in kw.items()}
        problems.append(Problem(name, code, message.format(attribute=attribute, **shown), kw.get("bound"), kw.get("value"), attribute))

    try:
        field_type = FieldType(type)
    except ValueError:
        problem("type", "type_invalid", TYPE_INVALID, value=type)
        raise GuardrailError(problems) from None

    allowed = list(allowed)
    for attribute, text in (("description", description), ("default", default), ("minimum", minimum), ("maximum", maximum), ("pattern", pattern), ("max_length", max_length), *(("allowed", v) for v in allowed)):
        bad = unwanted_character(text)
        if bad:
            problem(attribute, "invalid_character", DEFINITION_CONTROL, char=describe(bad), value=text)
    if problems:
        raise GuardrailError(problems)

    description = description.strip()
    if len(description) > MAX_DESCRIPTION_LENGTH:
        problem("description", "description_too_long", DESCRIPTION_TOO_LONG, bound=MAX_DESCRIPTION_LENGTH)

    if field_type is FieldType.STRING:
        result = _define_string(name, description, allowed, default, pattern, max_length, problem)
    else:
        result = _define_number(name, field_type, description, default, minimum, maximum, problem)
    if problems:
        raise GuardrailError(problems)
    return result


def check_definition(field_: Field) -> list[Problem]:
    """The consistency problems of a `Field` built by other means (stored data, the API)."""
    as_text = {k: "" if v is None else str(v) for k, v in (("default", field_.default), ("minimum", field_.minimum), ("maximum", field_.maximum), ("max_length", field_.max_length))}
    try:
        define_field(field_.name, field_.type.value, description=field_.description, allowed=field_.allowed, pattern=field_.pattern, **as_text)
    except GuardrailError as error:
        return error.problems
    return []


def _define_string(name, description, allowed, default, pattern, max_length, problem) -> Field:
    values = [v for v in allowed]
    if len(values) > MAX_ALLOWED_VALUES:  # said once, not checked value by value
        problem("allowed", "allowed_too_many", ALLOWED_TOO_MANY, bound=MAX_ALLOWED_VALUES)
        return Field(name, FieldType.STRING, description)
    seen: set[str] = set()
    for value in values:
        if not value.strip():
            problem("allowed", "allowed_empty", ALLOWED_EMPTY)
        elif len(value) > MAX_TEXT_LENGTH:
            problem("allowed", "allowed_too_long", ALLOWED_TOO_LONG, bound=MAX_TEXT_LENGTH)
        elif value in seen:
            problem("allowed", "allowed_duplicate", ALLOWED_DUPLICATE, value=value)
        seen.add(value)

    default_value = default if default.strip() else None
    if values:
        if default_value is not None and default_value not in values:
            problem("default", "default_not_allowed", DEFAULT_NOT_ALLOWED, value=default_value, bound=values)
        return Field(name, FieldType.STRING, description, tuple(values), default_value)

    limit = None
    if max_length.strip():
        limit = parse_integer(max_length.strip(_EDGE_SPACE))
        if limit is None or not 1 <= limit <= MAX_TEXT_LENGTH:
            limit = None
            shown = max_length if len(max_length) <= 40 else max_length[:40] + "…"
            problem("max_length", "max_length_invalid", MAX_LENGTH_INVALID, value=shown, bound=MAX_TEXT_LENGTH)
    compiled = None
    if pattern:
        if len(pattern) > MAX_PATTERN_LENGTH:
            problem("pattern", "pattern_too_long", PATTERN_TOO_LONG, bound=MAX_PATTERN_LENGTH)
        else:
            try:
                compiled = compile_pattern(pattern)
            except PatternError as error:
                problem("pattern", "pattern_invalid", PATTERN_INVALID, reason=error.reason, value=pattern)
    if default_value is not None:
        if limit is not None and len(default_value) > limit:
            problem("default", "default_too_long", DEFAULT_TOO_LONG, bound=limit, value=default_value)
        elif compiled is not None and not compiled.fullmatch(default_value):
            problem("default", "default_no_match", DEFAULT_NO_MATCH, bound=pattern, value=default_value)
    return Field(name, FieldType.STRING, description, (), default_value, pattern=pattern, max_length=limit)


def _define_number(name, field_type, description, default, minimum, maximum, problem) -> Field:
    def read(attribute: str, text: str) -> int | float | None:
        text = text.strip(_EDGE_SPACE)
        if not text:
            return None
        number = _read_number(field_type, text)
        if number is None and NON_FINITE_TEXT.match(text):
            problem(attribute, "not_finite", BOUND_NOT_FINITE, value=text)
            return None
        if number is None:
            if field_type is FieldType.INTEGER:
                problem(attribute, "not_integer", BOUND_NOT_INTEGER, value=text)
            else:
                problem(attribute, "not_number", BOUND_NOT_NUMBER, value=text)
        elif isinstance(number, float) and not math.isfinite(number):
            problem(attribute, "not_finite", BOUND_NOT_FINITE, value=text)
            return None
        return number

    low, high, preset = read("minimum", minimum), read("maximum", maximum), read("default", default)
    if low is not None and high is not None and low > high:
        problem("minimum", "min_above_max", MIN_ABOVE_MAX, value=low, bound=high)
    elif preset is not None:
        if low is not None and preset < low:
            problem("default", "default_below_minimum", DEFAULT_BELOW_MIN, value=preset, bound=low)
        if high is not None and preset > high:
            problem("default", "default_above_maximum", DEFAULT_ABOVE_MAX, value=preset, bound=high)
    return Field(name, field_type, description, (), preset, low, high)


def _read_number(field_type: FieldType, text: str) -> int | float | None:
    """Plain ASCII decimal notation only: no other scripts' digits, no `_`, no hex, no words."""
    return parse_integer(text) if field_type is FieldType.INTEGER else parse_float(text)


# --- checking values (the team member's launch) ------------------------------


class _AsJson(str):
    """A value that is not text (from a JSON API), shown in a message as JSON writes it: true, null, [1, 2]."""

    def __repr__(self) -> str:
        return str(self)

    @classmethod
    def of(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value if len(value) <= 60 else value[:40] + "…"
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
            try:
                return cls(str(value)[:40] + "…")
            except ValueError:  # more digits than Python will write out
                return cls("a number of thousands of digits")
        if isinstance(value, float):
            return cls(plain_number(value))
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = type(value).__name__
        return cls(text if len(text) <= 40 else text[:40] + "…")


def check_value(field_: Field, raw: object) -> Value:
    """The typed value for `raw`, or `GuardrailError` naming the rule and the bound.

    `raw` is text from a form or the command line, or a JSON value from an API.
    Missing (None or blank text) takes the default; without one it is required.
    """
    name = field_.name

    def fail(code: str, message: str, **kw: Any) -> GuardrailError:
        shown = {k: plain_number(v) if isinstance(v, float) else v for k, v in kw.items()}
        if "value" in kw:
            shown["value"] = _AsJson.of(kw["value"])
        return GuardrailError([Problem(name, code, message.format(field=name, **shown), kw.get("bound"), kw.get("value"))])

    if raw is None or (isinstance(raw, str) and not raw.strip(_EDGE_SPACE)):
        if field_.default is None:
            raise fail("required", REQUIRED)
        return field_.default

    if field_.type is FieldType.STRING:
        if not isinstance(raw, str):
            raise fail("type", NOT_TEXT, value=raw)
        bad = unwanted_character(raw)
        if bad:
            raise fail("invalid_character", CONTROL, char=describe(bad), value=raw)
        limit = min(field_.max_length or MAX_TEXT_LENGTH, MAX_TEXT_LENGTH)
        if len(raw) > limit:
            raise fail("max_length", TOO_LONG, bound=limit, length=len(raw), value=raw[:40] + "…")
        if field_.allowed and raw not in field_.allowed:
            raise fail("not_allowed", NOT_ALLOWED, bound=list(field_.allowed), value=raw, allowed=", ".join(field_.allowed))
        if field_.pattern:
            try:
                matched = matches(field_.pattern, raw)
            except PatternError as error:  # stored before patterns ran on RE2; never run on a backtracking engine
                raise fail("pattern_unusable", PATTERN_UNUSABLE, bound=field_.pattern, reason=error.reason) from None
            if not matched:
                raise fail("pattern", NO_MATCH, bound=field_.pattern, value=raw)
        return raw

    if isinstance(raw, str) and len(raw.strip(_EDGE_SPACE)) > MAX_NUMBER_CHARS:
        raise fail("type", NUMBER_TOO_LONG, bound=MAX_NUMBER_CHARS, length=len(raw.strip(_EDGE_SPACE)), value=raw)
    if field_.type is FieldType.INTEGER and isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) >= 10**MAX_NUMBER_CHARS:
        # A JSON number gets the same limit as one written as text (a Float's turns infinite, below).
        raise fail("type", NUMBER_TOO_LONG, bound=MAX_NUMBER_CHARS, length="more", value=raw)
    number = _number_from(field_.type, raw)
    if isinstance(raw, str) and NON_FINITE_TEXT.match(raw.strip(_EDGE_SPACE)) or isinstance(raw, float) and not math.isfinite(raw):
        raise fail("not_finite", NOT_FINITE, value=str(raw) if isinstance(raw, float) else raw)
    if number is None:
        message = NOT_INTEGER if field_.type is FieldType.INTEGER else NOT_NUMBER
        raise fail("type", message, value=raw)
    if isinstance(number, float) and not math.isfinite(number):
        raise fail("not_finite", NOT_FINITE, value=str(raw))
    if field_.minimum is not None and number < field_.minimum:
        raise fail("minimum", BELOW_MINIMUM, bound=field_.minimum, value=number)
    if field_.maximum is not None and number > field_.maximum:
        raise fail("maximum", ABOVE_MAXIMUM, bound=field_.maximum, value=number)
    return number


def _number_from(field_type: FieldType, raw: object) -> int | float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        return _read_number(field_type, raw.strip(_EDGE_SPACE))
    if field_type is FieldType.INTEGER:
        return raw if isinstance(raw, int) else None
    if isinstance(raw, int | float):
        try:
            return float(raw)
        except OverflowError:
            return math.inf
    return None


def check_values(fields: Sequence[Field], raw: Mapping[str, object]) -> dict[str, Value]:
    """Check a whole launch: every field's value, and no names the queue does not define.

    Returns the typed values in field order; raises `GuardrailError` with all problems.
    """
    if len(raw) > MAX_FIELDS:  # refused whole: answering for each of 50,000 names costs more than it tells
        raise GuardrailError([Problem("", "too_many_values", TOO_MANY_VALUES.format(bound=MAX_FIELDS, count=len(raw)), bound=MAX_FIELDS)])
    problems: list[Problem] = []
    values: dict[str, Value] = {}
    known = {f.name for f in fields}
    unknown = [str(name) for name in raw if name not in known]
    names = sorted(known)
    for name in unknown[:MAX_UNKNOWN_SHOWN]:
        shown = _AsJson.of(name)
        problems.append(Problem(shown, "unknown_field", UNKNOWN_FIELD.format(field=shown), bound=names))
    if len(unknown) > MAX_UNKNOWN_SHOWN:
        extra = len(unknown) - MAX_UNKNOWN_SHOWN
        problems.append(Problem("", "unknown_field", MORE_UNKNOWN.format(count=extra), bound=names))
    for field_ in fields:
        try:
            values[field_.name] = check_value(field_, raw.get(field_.name))
        except GuardrailError as error:
            problems.extend(error.problems)
    if problems:
        raise GuardrailError(problems)
    return values


# --- describing fields to clients --------------------------------------------


def json_schema(field_: Field) -> dict[str, Any]:
    """The field as JSON Schema, in the shape W&B's clients read."""
    schema: dict[str, Any] = {"type": {"string": "string", "integer": "integer", "float": "number"}[field_.type]}
    if field_.allowed:
        schema["enum"] = list(field_.allowed)
    if field_.minimum is not None:
        schema["minimum"] = field_.minimum
    if field_.maximum is not None:
        schema["maximum"] = field_.maximum
    if field_.pattern:
        schema["pattern"] = field_.pattern
    if field_.max_length is not None:
        schema["maxLength"] = field_.max_length
    if field_.default is not None:
        schema["default"] = field_.default
    if field_.description:
        schema["description"] = field_.description
    return schema


def blank_field(name: str) -> Field:
    """A new tile's starting point: free text, no guardrails yet."""
    return Field(name)


__all__ = [
    "Field",
    "FieldType",
    "GuardrailError",
    "Problem",
    "blank_field",
    "check_definition",
    "check_value",
    "check_values",
    "define_field",
    "json_schema",
]

"""Properties of parse, check and render, over generated configs and values (hypothesis). No database.

- A value `check_value` accepts, rendered into a config, reads back from the rendered text as that value,
  whole or inside longer text, in YAML and in JSON.
- Finding fields is stable: the same data written as YAML or JSON has the same fields at the same paths,
  and the JSON scanner's paths are those of the parsed data.
- Rendering the same data written as YAML and as JSON gives the same result.
- `check_value` answers any JSON value with a typed value or a `GuardrailError`, never another exception.

Deterministic (derandomized) and bounded in examples, so a run is repeatable and quick.
"""

from __future__ import annotations

import json
import math

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from launchq.guardrails import Field, FieldType, GuardrailError, check_value
from launchq.templating import Format, parse_config, render_data, render_text

SETTINGS = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
CHARS = st.characters(codec="utf-8", exclude_characters="\ue000\ue001\ue002\ue003\ue004")  # reserved by the parse
KEYS = st.text(CHARS, min_size=1, max_size=8).filter(
    lambda k: "{{" not in k and "}}" not in k and "${" not in k
)
FIELDS = [
    Field("text", FieldType.STRING),
    Field("branch", FieldType.STRING, pattern=r"[a-z0-9][a-z0-9._-]*", max_length=40),
    Field("choice", FieldType.STRING, allowed=("ml.m4.xlarge", "ml.p3.xlarge", "yes", "1", "null", "a: b")),
    Field("count", FieldType.INTEGER, minimum=-(10**12), maximum=10**12),
    Field("rate", FieldType.FLOAT, minimum=-1e9, maximum=1e9),
]


def raw_values(field: Field):
    """What a member might send for `field`: text of all kinds, and numbers as JSON and as text."""
    text = st.text(st.characters(codec="utf-8"), max_size=30)
    if field.allowed:
        return st.one_of(st.sampled_from(field.allowed), text)
    if field.type is FieldType.INTEGER:
        return st.one_of(st.integers(-(10**13), 10**13), st.integers(-(10**13), 10**13).map(str), text)
    if field.type is FieldType.FLOAT:
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e10, 1e10).map(repr), text)
    return text


@st.composite
def accepted(draw):
    """A field and a value it accepts, typed."""
    field = draw(st.sampled_from(FIELDS))
    raw = draw(raw_values(field))
    try:
        return field, check_value(field, raw)
    except GuardrailError:
        return field, check_value(field, None) if field.default is not None else None


def plain_read(text: str, fmt: Format):
    return json.loads(text) if fmt is Format.JSON else yaml.safe_load(text)


@SETTINGS
@given(accepted(), st.sampled_from(list(Format)), st.sampled_from(["plain", "quoted", "inside"]))
def test_an_accepted_value_reads_back_from_the_rendered_config(pair, fmt, style):
    field, value = pair
    if value is None:
        return
    name = field.name
    if fmt is Format.JSON:
        holder = {"plain": f'"{{{{{name}}}}}"', "quoted": f'"{{{{{name}}}}}"', "inside": f'"s3://bucket/{{{{{name}}}}}/out"'}[style]
        text = '{"job": {"a": 1, "value": ' + holder + "}}"
    else:
        holder = {"plain": f"{{{{{name}}}}}", "quoted": f"'{{{{{name}}}}}'", "inside": f"s3://bucket/{{{{{name}}}}}/out"}[style]
        text = "# a comment {{not_a_field}}\njob:\n  a: 1\n  value: " + holder + "\n"
    parsed = parse_config(text, fmt)
    assert parsed.fields == [name]
    rendered = render_text(parsed, {name: value})
    read = plain_read(rendered.text, fmt)["job"]["value"]
    if style == "inside":
        assert read == f"s3://bucket/{value}/out"
    elif isinstance(value, float) and math.isnan(value):
        assert math.isnan(read)
    else:
        assert read == value and type(read) is type(value)
    assert render_data(parsed, {name: value})[0]["job"]["value"] == read


def config_data():
    """Nested config data with template fields and macros in some string values."""
    leaf = st.one_of(
        st.integers(-1000, 1000),
        st.booleans(),
        st.none(),
        st.text(CHARS, max_size=12).filter(lambda s: "{{" not in s and "}}" not in s and "{" not in s[-1:] and "}" not in s[:1]),
        NAMES.map(lambda n: f"{{{{{n}}}}}"),
        NAMES.map(lambda n: f"pre-{{{{{n}}}}}-post"),
        NAMES.map(lambda n: f"${{{n}}}"),
    )
    tree = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=25)
    return st.dictionaries(KEYS, tree, min_size=1, max_size=5)


def yaml_of(data) -> str:
    """The data as YAML, for data PyYAML itself reads back the same (it folds a NEL in a key into a space)."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    assume(yaml.safe_load(text) == data)
    return text


def string_paths(node, path="") -> dict[str, str]:
    """Every string value by its path, as the parse writes paths (`a.b[0]`)."""
    found = {}
    if isinstance(node, dict):
        for key, value in node.items():
            found.update(string_paths(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.update(string_paths(value, f"{path}[{i}]"))
    elif isinstance(node, str):
        found[path] = node
    return found


@SETTINGS
@given(config_data(), st.sampled_from([None, 2]))
def test_fields_are_found_at_the_same_paths_in_yaml_and_json(data, indent):
    from_json = parse_config(json.dumps(data, indent=indent, ensure_ascii=False), "json")
    from_yaml = parse_config(yaml_of(data), "yaml")
    assert [(o.name, o.path, o.whole) for o in from_json.occurrences] == [(o.name, o.path, o.whole) for o in from_yaml.occurrences]
    assert from_json.macros == from_yaml.macros
    # The JSON scanner's paths and positions are those of the data, whatever the keys hold.
    assert set(from_json.positions) == set(string_paths(from_json.data))


@SETTINGS
@given(config_data(), st.data())
def test_yaml_and_json_render_the_same_data(data, draw):
    from_json = parse_config(json.dumps(data, ensure_ascii=False), "json")
    from_yaml = parse_config(yaml_of(data), "yaml")
    values = {}
    for name in from_json.fields:
        field = draw.draw(st.sampled_from(FIELDS))
        values[name] = draw.draw(accepted().filter(lambda p, f=field: p[1] is not None)).__getitem__(1)
    data_json, _ = render_data(from_json, values)
    data_yaml, _ = render_data(from_yaml, values)
    assert data_json == data_yaml
    assert plain_read(render_text(from_json, values).text, Format.JSON) == data_json
    assert plain_read(render_text(from_yaml, values).text, Format.YAML) == data_yaml


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)


@SETTINGS
@given(st.sampled_from(FIELDS), JSON_VALUES)
def test_check_value_answers_any_json_value_with_a_value_or_a_guardrail_error(field, raw):
    try:
        value = check_value(field, raw)
    except GuardrailError as error:
        assert error.problems and all(p.field == field.name and p.code for p in error.problems)
        json.dumps([p.message for p in error.problems])  # messages are text a client can carry
    else:
        assert isinstance(value, {FieldType.STRING: str, FieldType.INTEGER: int, FieldType.FLOAT: float}[field.type])

"""What `{{name}}` means: finding template fields, errors with positions, typed rendering. No database."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from launchq.limits import MAX_FIELDS
from launchq.templating import (
    MAX_CONFIG_BYTES,
    ConfigError,
    Format,
    parse_config,
    render_data,
    render_text,
)

SEED = """\
RoleArn: arn:aws:iam:region:account-id:resource-type/resource-id
ResourceConfig:
  InstanceType: "{{aws_instance}}"
  InstanceCount: 1
  VolumeSizeInGB: 2
OutputDataConfig:
  S3OutputPath: s3://bucketname
StoppingCondition:
  MaxRuntimeInSeconds: 3600
"""


def error_of(text: str, fmt: str = "yaml") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, fmt)
    return caught.value


# --- finding fields ----------------------------------------------------------


def test_the_seed_example_has_one_field_at_instance_type():
    parsed = parse_config(SEED, "yaml")
    assert parsed.fields == ["aws_instance"]
    [where] = parsed.where("aws_instance")
    assert (where.path, where.line, where.column, where.whole) == ("ResourceConfig.InstanceType", 3, 18, True)


@pytest.mark.parametrize(
    "value",
    ['"{{aws_instance}}"', "'{{aws_instance}}'", "{{aws_instance}}", "{{ aws_instance }}", '"{{  aws_instance\t}}"'],
)
def test_quoted_unquoted_and_spaced_placeholders_are_the_same_field(value):
    parsed = parse_config(f"ResourceConfig:\n  InstanceType: {value}\n", "yaml")
    assert parsed.fields == ["aws_instance"]
    assert parsed.where("aws_instance")[0].whole
    data, _ = render_data(parsed, {"aws_instance": "ml.p3.xlarge"})
    assert data == {"ResourceConfig": {"InstanceType": "ml.p3.xlarge"}}


@pytest.mark.parametrize("name", ["a", "_x", "aws-instance", "gpu_count2", "A-b_C-9"])
def test_valid_names(name):
    assert parse_config(f"k: {{{{{name}}}}}", "yaml").fields == [name]


def test_the_same_name_twice_is_one_field_used_in_two_places():
    parsed = parse_config("a: '{{n}}'\nb:\n  - x-{{n}}\n", "yaml")
    assert parsed.fields == ["n"]
    assert [o.path for o in parsed.where("n")] == ["a", "b[0]"]


def test_fields_come_in_config_order():
    parsed = parse_config("z: '{{last}}'\na: '{{first}}'\nm: [{{middle}}]\n", "yaml")
    assert parsed.fields == ["last", "first", "middle"]


def test_a_placeholder_in_a_comment_is_not_a_field_not_even_a_broken_one():
    parsed = parse_config("# set {{ x }} and {{ bad name }} and {{ unclosed\na: 1  # {{y}}\n", "yaml")
    assert parsed.fields == []


def test_macros_are_not_fields_and_are_listed():
    parsed = parse_config("out: s3://b/${project_name}/${MY_VAR}/${run_id}\nn: '{{n}}'\n", "yaml")
    assert parsed.fields == ["n"]
    assert parsed.macros == ("project_name", "MY_VAR", "run_id")


def test_json_fields_quoted_and_unquoted():
    text = '{\n  "a": "{{x}}",\n  "b": {{ n }},\n  "c": ["s3://{{x}}/y"]\n}'
    parsed = parse_config(text, "json")
    assert parsed.fields == ["x", "n"]
    assert [(o.path, o.line, o.whole) for o in parsed.occurrences] == [("a", 2, True), ("b", 3, True), ("c[0]", 4, False)]


def test_blank_and_comment_only_configs_are_empty_mappings():
    assert parse_config("", "yaml").data == {}
    assert parse_config("  \n", "json").data == {}
    assert parse_config("# nothing yet\n", "yaml").data == {}


def test_the_same_key_in_different_mappings_is_no_duplicate():
    assert parse_config("a: {x: 1}\nb: {x: 2}\n1: int\n'1': text\n", "yaml").data["b"] == {"x": 2}
    assert parse_config('{"a": {"x": 1}, "b": [{"x": 1}, {"x": 2}]}', "json").data["b"][1] == {"x": 2}
    message = str(error_of("a: 1\na: 2\n"))
    assert "'a' appears twice" in message and "first on line 1" in message


def test_a_saved_version_with_a_key_written_twice_still_reads_as_it_did():
    assert parse_config("a: 1\nb: '{{n}}'\na: 3\n", "yaml", strict_keys=False).data["a"] == 3
    assert parse_config('{"a": 1, "a": 3}', "json", strict_keys=False).data == {"a": 3}


def test_yaml_aliases_and_merge_keys_work():
    parsed = parse_config("base: &b {size: '{{n}}'}\njob:\n  <<: *b\n  name: x\n", "yaml")
    data, _ = render_data(parsed, {"n": 4})
    assert data["job"] == {"size": 4, "name": "x"}


# --- errors, with line and column --------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "line", "column"),
    [
        ("a: 1\nb: {{}}\n", "empty_placeholder", 2, 4),
        ("a: '{{ }}'\n", "empty_placeholder", 1, 5),
        ("a: {{ bad name }}\n", "invalid_name", 1, 4),
        ("a: '{{9lives}}'\n", "invalid_name", 1, 5),
        ("a: '{{x.y}}'\n", "invalid_name", 1, 5),
        ("a: x {{y\n", "unclosed_placeholder", 1, 6),
        ("{{a}}: 1\n", "placeholder_in_key", 1, 1),
        ("top:\n  '{{k}}': v\n", "placeholder_in_key", 2, 4),
        ("a: [1, 2\n", "syntax", 2, 1),
        ("a: b: c\n", "syntax", 1, 5),
        ("- 1\n- 2\n", "not_mapping", 1, 1),
        ("just text\n", "not_mapping", 1, 1),
        ("a: !!python/object:os.system x\n", "bad_tag", 1, 4),
        ("a: !custom 1\n", "bad_tag", 1, 4),
        ("a: 1\n---\nb: 2\n", "syntax", 2, 1),
        ("a: \ue000\n", "reserved_character", 1, 4),
        ("a: 1\nb: 2\na: 3\n", "duplicate_key", 3, 1),
        ("top:\n  x: 1\n  'x': '{{n}}'\n", "duplicate_key", 3, 3),
        ("yes: 1\ntrue: 2\n", "duplicate_key", 2, 1),
        ("1: a\n0x1: b\n", "duplicate_key", 2, 1),
        ("a: 1\nn: " + "9" * 5000 + "\n", "too_large_number", 2, 4),
    ],
)
def test_yaml_errors_name_their_line_and_column(text, code, line, column):
    error = error_of(text)
    assert (error.code, error.line, error.column) == (code, line, column)
    assert f"Line {line}, column {column}" in str(error)


@pytest.mark.parametrize(
    ("text", "code", "line", "column"),
    [
        ('{"{{x}}": 1}', "placeholder_in_key", 1, 3),
        ('{"a": {{bad name}}}', "invalid_name", 1, 7),
        ('{\n  "a": "{{}}"\n}', "empty_placeholder", 2, 9),
        ('{"a": "x {{y"}', "unclosed_placeholder", 1, 10),
        ('{"a": 1,}', "syntax", 1, 9),
        ("[1, 2]", "not_mapping", 1, 1),
        ('"text"', "not_mapping", 1, 1),
        ('{"a": 1,\n "a": "{{n}}"}', "duplicate_key", 2, 2),
        ('{"a": {"x": 1}, "b": [{"x": 1}, {"x": 2, "y": 3, "x": 4}]}', "duplicate_key", 1, 50),
        ('{"n": ' + "9" * 5000 + "}", "too_large_number", 1, 7),
    ],
)
def test_json_errors_name_their_line_and_column(text, code, line, column):
    error = error_of(text, "json")
    assert (error.code, error.line, error.column) == (code, line, column)


def test_a_config_over_256_kib_is_refused_before_parsing():
    text = "a: " + "x" * MAX_CONFIG_BYTES
    assert error_of(text).code == "too_large"


@pytest.mark.parametrize("extra", [1, 1023, 1024 * 40])
def test_the_size_refusal_says_the_real_size_not_a_rounded_one(extra):
    """"The config is 256 KiB; the limit is 256 KiB" told nobody how much to cut."""
    error = error_of("a: " + "é" * ((MAX_CONFIG_BYTES - 3 + extra) // 2) + "x" * ((MAX_CONFIG_BYTES - 3 + extra) % 2))
    size = MAX_CONFIG_BYTES + extra
    assert f"{size:,} bytes" in error.message and f"{MAX_CONFIG_BYTES:,} bytes" in error.message


def test_a_config_with_more_template_fields_than_the_cap_is_refused_where_the_first_extra_one_is():
    text = "".join(f"f{i}: '{{{{f{i}}}}}'\n" for i in range(MAX_FIELDS + 5))
    error = error_of(text)
    assert (error.code, error.line) == ("too_many_fields", MAX_FIELDS + 1)
    assert parse_config(text, "yaml", strict_keys=False).fields[-1] == f"f{MAX_FIELDS + 4}"  # saved before the cap


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_parse_work_grows_linearly_with_the_config(fmt):
    """Counted, not timed: the Python lines run behind Parse configuration (parse, tiles, checks) for a config 4x
    as large stay within 4.5x. The 8,000-field config of the audit took 30 s when each field's lookup walked them all."""
    from launchq.editor import EditorState
    from launchq.forms import ConfigPost

    def config(blocks: int) -> str:
        data = {f"s{i}": {"image": f"repo/app:{{{{t{i}}}}}", "n": f"{{{{n{i}}}}}", "env": ["${run_id}", {"k": i}]} for i in range(blocks)}
        text = json.dumps(data, indent=2)
        return text if fmt == "json" else yaml.safe_dump(json.loads(text), sort_keys=False)

    def lines_run(text: str) -> int:
        """Python lines executed (a comprehension's too, once per item)."""
        count = 0

        def trace(frame, event, arg):
            nonlocal count
            count += 1
            return trace

        post = ConfigPost(text, fmt, None, {}, None)
        sys.settrace(trace)
        try:
            state = EditorState.from_post(post, None)
            state.check_tiles()
        finally:
            sys.settrace(None)
        assert state.config_error is None
        return count

    small, large = lines_run(config(25)), lines_run(config(100))
    assert large <= 4.5 * small, (small, large)


@pytest.mark.timeout(60)  # an alias bomb that got expanded would run out the clock (and the memory)
def test_billion_laughs_is_refused_quickly():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    assert error_of("\n".join(levels)).code == "too_many_values"


def test_deep_nesting_is_refused():
    assert error_of("a: " + "[" * 200 + "]" * 200).code in {"too_deep", "syntax"}
    assert error_of('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "json").code == "too_deep"


def test_nothing_outside_the_safe_loader_is_built():
    text = "a: !!python/object/apply:os.system ['echo pwned']\n"
    assert error_of(text).code == "bad_tag"


# --- rendering ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_a_whole_value_placeholder_renders_typed_in_both_formats(fmt):
    text = 'count: "{{count}}"\nrate: "{{rate}}"\n' if fmt == "yaml" else '{"count": "{{count}}", "rate": "{{rate}}"}'
    parsed = parse_config(text, fmt)
    data, _ = render_data(parsed, {"count": 2, "rate": 0.5})
    assert data == {"count": 2, "rate": 0.5}
    rendered = render_text(parsed, {"count": 2, "rate": 0.5}).text
    loaded = yaml.safe_load(rendered) if fmt == "yaml" else json.loads(rendered)
    assert loaded == {"count": 2, "rate": 0.5}
    assert '"2"' not in rendered


def test_an_embedded_placeholder_is_interpolated_as_text():
    parsed = parse_config("out: s3://bucket/{{team}}/out\nn: 'x{{count}}'\n", "yaml")
    data, _ = render_data(parsed, {"team": "vision", "count": 3})
    assert data == {"out": "s3://bucket/vision/out", "n": "x3"}


def test_render_text_keeps_comments_layout_and_marks_the_values():
    parsed = parse_config(SEED.replace("InstanceCount: 1", "InstanceCount: {{n}}  # how many"), "yaml")
    rendered = render_text(parsed, {"aws_instance": "ml.p3.xlarge", "n": 4})
    assert "InstanceCount: 4  # how many" in rendered.text
    assert 'InstanceType: "ml.p3.xlarge"' in rendered.text
    assert [rendered.text[a:b] for a, b in rendered.marks] == ["ml.p3.xlarge", "4"]
    assert yaml.safe_load(rendered.text)["ResourceConfig"] == {"InstanceType": "ml.p3.xlarge", "InstanceCount": 4, "VolumeSizeInGB": 2}


@pytest.mark.parametrize(
    "value",
    ["2", "yes", "null", "a: b", "x #y", "- item", '"quoted"', "it's", "multi\nline", "tab\there", "{curly}", "émoji 🚀", "\x07bell", ""],
)
@pytest.mark.parametrize("style", ["{{v}}", "'{{v}}'", '"{{v}}"', "pre-{{v}}-post", "[{{v}}, other]"])
def test_string_values_render_to_yaml_that_reads_back_as_the_same_string(value, style):
    parsed = parse_config(f"key: {style}\n", "yaml")
    expected, _ = render_data(parsed, {"v": value})
    rendered = render_text(parsed, {"v": value})
    assert yaml.safe_load(rendered.text) == expected


@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "new\nline", "ünï"])
def test_string_values_render_to_valid_json(value):
    parsed = parse_config('{"a": "{{v}}", "b": "x-{{v}}"}', "json")
    assert json.loads(render_text(parsed, {"v": value}).text) == {"a": value, "b": "x-" + value}


def test_small_and_large_floats_stay_floats_in_yaml():
    parsed = parse_config("a: {{x}}\nb: {{y}}\n", "yaml")
    loaded = yaml.safe_load(render_text(parsed, {"x": 1e-05, "y": 1e20}).text)
    assert loaded == {"a": 1e-05, "b": 1e20}
    assert all(isinstance(v, float) for v in loaded.values())


def test_block_scalars_and_anchors_render_correctly():
    text = "script: |\n  echo {{who}}\n  done\nlabel: &l '{{who}}'\ncopy: *l\n"
    parsed = parse_config(text, "yaml")
    loaded = yaml.safe_load(render_text(parsed, {"who": "ada"}).text)
    assert loaded == {"script": "echo ada\ndone\n", "label": "ada", "copy": "ada"}


# --- macros and member text --------------------------------------------------


def test_macros_are_filled_only_in_the_admins_text():
    parsed = parse_config("path: /data/${USER_DIR}/{{sub}}\nname: '{{sub}}'\n", "yaml")
    env = {"USER_DIR": "admin-chosen", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    data, missing = render_data(parsed, {"sub": "${AWS_SECRET_ACCESS_KEY}"}, env.get)
    assert data == {"path": "/data/admin-chosen/${AWS_SECRET_ACCESS_KEY}", "name": "${AWS_SECRET_ACCESS_KEY}"}
    assert missing == []


def test_unfilled_macros_stay_as_written_and_are_reported():
    parsed = parse_config("a: ${NOPE}-${run_id}\n", "yaml")
    data, missing = render_data(parsed, {}, {"run_id": "abc"}.get)
    assert data == {"a": "${NOPE}-abc"}
    assert missing == ["NOPE"]


def test_render_text_leaves_macros_for_the_agent():
    parsed = parse_config("out: s3://b/${project_name}/{{team}}\n", "yaml")
    assert "out: s3://b/${project_name}/ml\n" == render_text(parsed, {"team": "ml"}).text


def test_format_enum_reads_strings():
    assert Format("yaml") is Format.YAML
    with pytest.raises(ValueError):
        parse_config("a: 1", "toml")

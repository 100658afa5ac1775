"""The guardrails: defining a field (the admin's tile) and checking values (every launch path). No database."""

from __future__ import annotations

import pytest

from launchq.guardrails import (
    Field,
    FieldType,
    GuardrailError,
    check_definition,
    check_value,
    check_values,
    define_field,
    json_schema,
)


def codes_of_definition(**kw) -> list[tuple[str, str]]:
    with pytest.raises(GuardrailError) as caught:
        define_field("f", **kw)
    return [(p.attribute, p.code) for p in caught.value.problems]


def problem_of(field: Field, raw) -> tuple[str, object]:
    with pytest.raises(GuardrailError) as caught:
        check_value(field, raw)
    [problem] = caught.value.problems
    return problem.code, problem.bound


# --- defining fields ---------------------------------------------------------


def test_a_string_with_allowed_values():
    field = define_field("aws_instance", "string", allowed=["ml.m4.xlarge", "ml.p3.xlarge"], default="ml.m4.xlarge")
    assert field == Field("aws_instance", FieldType.STRING, allowed=("ml.m4.xlarge", "ml.p3.xlarge"), default="ml.m4.xlarge")


def test_empty_inputs_mean_unset():
    field = define_field("n", "integer", minimum="", maximum=" ", default="")
    assert (field.minimum, field.maximum, field.default, field.required) == (None, None, None, True)


def test_numbers_are_typed_by_the_fields_type():
    assert define_field("n", "integer", minimum="1", maximum="8", default="2") == Field("n", FieldType.INTEGER, minimum=1, maximum=8, default=2)
    f = define_field("r", "float", minimum="0", maximum="1.5", default=".5")
    assert (f.minimum, f.maximum, f.default) == (0.0, 1.5, 0.5)
    assert all(isinstance(v, float) for v in (f.minimum, f.maximum, f.default))


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"type": "integer", "minimum": "5", "maximum": "1"}, [("minimum", "min_above_max")]),
        ({"type": "integer", "minimum": "1", "maximum": "4", "default": "9"}, [("default", "default_above_maximum")]),
        ({"type": "float", "minimum": "1", "default": "0.5"}, [("default", "default_below_minimum")]),
        ({"type": "integer", "minimum": "1.5"}, [("minimum", "not_integer")]),
        ({"type": "integer", "maximum": "3.0"}, [("maximum", "not_integer")]),
        ({"type": "integer", "default": "two"}, [("default", "not_integer")]),
        ({"type": "integer", "minimum": "٣"}, [("minimum", "not_integer")]),
        ({"type": "float", "maximum": "nan"}, [("maximum", "not_finite")]),
        ({"type": "float", "maximum": "inf"}, [("maximum", "not_finite")]),
        ({"type": "integer", "maximum": "-inf"}, [("maximum", "not_finite")]),
        ({"type": "float", "maximum": "1e999"}, [("maximum", "not_finite")]),
        ({"type": "float", "minimum": "1_000"}, [("minimum", "not_number")]),
        ({"type": "string", "allowed": ["a", "b"], "default": "c"}, [("default", "default_not_allowed")]),
        ({"type": "string", "allowed": ["a", "a"]}, [("allowed", "allowed_duplicate")]),
        ({"type": "string", "allowed": ["a", " "]}, [("allowed", "allowed_empty")]),
        ({"type": "string", "pattern": "([a-z"}, [("pattern", "pattern_invalid")]),
        ({"type": "string", "pattern": "[a-z]+", "default": "ABC"}, [("default", "default_no_match")]),
        ({"type": "string", "max_length": "3", "default": "abcd"}, [("default", "default_too_long")]),
        ({"type": "string", "max_length": "0"}, [("max_length", "max_length_invalid")]),
        ({"type": "string", "max_length": "x"}, [("max_length", "max_length_invalid")]),
        ({"type": "string", "description": "d" * 2001}, [("description", "description_too_long")]),
        ({"type": "boolean"}, [("type", "type_invalid")]),
    ],
)
def test_guardrails_that_contradict_each_other_are_refused(kw, expected):
    assert codes_of_definition(**kw) == expected


def test_every_problem_is_reported_not_just_the_first():
    codes = codes_of_definition(type="integer", minimum="x", maximum="y", default="z")
    assert codes == [("minimum", "not_integer"), ("maximum", "not_integer"), ("default", "not_integer")]


def test_constraints_of_another_type_are_dropped():
    f = define_field("s", "string", allowed=["a"], pattern="[0-9]+", max_length="2", minimum="3")
    assert (f.pattern, f.max_length, f.minimum) == ("", None, None)


def test_stored_fields_round_trip_and_can_be_rechecked():
    f = define_field("n", "integer", minimum="1", maximum="4", default="2", description="GPUs")
    assert Field.from_dict(f.to_dict()) == f
    assert check_definition(f) == []
    assert [p.code for p in check_definition(Field("n", FieldType.INTEGER, minimum=4, maximum=1))] == ["min_above_max"]


# --- checking values ---------------------------------------------------------

GPUS = Field("gpus", FieldType.INTEGER, minimum=1, maximum=4)
RATE = Field("rate", FieldType.FLOAT, minimum=0.0, maximum=1.0, default=0.1)
INSTANCE = Field("aws_instance", FieldType.STRING, allowed=("ml.m4.xlarge", "ml.p3.xlarge"))
BRANCH = Field("branch", FieldType.STRING, pattern=r"[a-z0-9-]+", max_length=10)


@pytest.mark.parametrize(("raw", "typed"), [("2", 2), (" 3 ", 3), (4, 4), ("+1", 1), ("01", 1)])
def test_integers_in_plain_ascii_digits_are_accepted(raw, typed):
    value = check_value(GPUS, raw)
    assert value == typed and isinstance(value, int)


@pytest.mark.parametrize(
    "raw",
    ["٣", "３", "²", "1_000", "0x10", "2.0", "2.5", "1e2", "two", "--1", "1 2", 2.0, 2.5, True, [2], {"n": 2}, "9" * 80],
)
def test_integers_in_any_other_spelling_are_refused(raw):
    assert problem_of(GPUS, raw)[0] == "type"


def test_a_number_of_thousands_of_digits_is_refused_for_its_length_without_echoing_it():
    with pytest.raises(GuardrailError) as refused:
        check_value(GPUS, "9" * 5000)
    message = refused.value.problems[0].message
    assert message == "gpus must be a number written in at most 64 characters (got 5000)."
    with pytest.raises(GuardrailError) as refused:
        check_value(INSTANCE, "ml." + "x" * 500)
    assert len(refused.value.problems[0].message) < 200
    for number in (10**200, -(10**3000), 10**5000):  # as JSON numbers (or from Python)
        with pytest.raises(GuardrailError) as refused:
            check_value(Field("n", FieldType.INTEGER), number)
        assert refused.value.problems[0].code == "type" and len(refused.value.problems[0].message) < 200


@pytest.mark.parametrize("raw", [float("inf"), float("-inf"), float("nan"), "inf", "NaN"])
def test_integers_refuse_nan_and_infinity_as_not_finite(raw):
    assert problem_of(GPUS, raw)[0] == "not_finite"


@pytest.mark.parametrize(("raw", "shown"), [(True, "(got true)"), ([2], "(got [2])"), ({"n": 2}, '(got {"n": 2})'), ("two", "(got 'two')")])
def test_a_refused_value_is_shown_as_it_was_written(raw, shown):
    with pytest.raises(GuardrailError) as refused:
        check_value(GPUS, raw)
    assert refused.value.problems[0].message.endswith(shown + ".")


@pytest.mark.parametrize(("raw", "typed"), [("0.5", 0.5), (".5", 0.5), ("1", 1.0), (0, 0.0), ("5e-1", 0.5), ("1.", 1.0)])
def test_floats_in_plain_ascii_notation_are_accepted(raw, typed):
    value = check_value(RATE, raw)
    assert value == typed and isinstance(value, float)


@pytest.mark.parametrize(("raw", "code"), [("nan", "not_finite"), ("NaN", "not_finite"), ("inf", "not_finite"), ("-Infinity", "not_finite"), ("1e999", "not_finite"), (float("nan"), "not_finite"), (float("inf"), "not_finite"), (10**400, "not_finite"), ("٠.٥", "type"), ("0,5", "type")])
def test_floats_refuse_nan_infinity_and_other_scripts(raw, code):
    assert problem_of(RATE, raw)[0] == code


@pytest.mark.parametrize(("field", "raw", "code", "bound"), [(GPUS, "0", "minimum", 1), (GPUS, 5, "maximum", 4), (RATE, "1.5", "maximum", 1.0), (RATE, "-0.1", "minimum", 0.0)])
def test_values_outside_the_range_name_the_bound(field, raw, code, bound):
    assert problem_of(field, raw) == (code, bound)


def test_strings_must_be_among_the_allowed_values():
    assert check_value(INSTANCE, "ml.p3.xlarge") == "ml.p3.xlarge"
    assert problem_of(INSTANCE, "ml.p4d.24xlarge") == ("not_allowed", ["ml.m4.xlarge", "ml.p3.xlarge"])
    assert problem_of(INSTANCE, "ML.P3.XLARGE")[0] == "not_allowed"
    assert problem_of(INSTANCE, 3)[0] == "type"


def test_free_strings_follow_their_pattern_and_length():
    assert check_value(BRANCH, "main-2") == "main-2"
    assert problem_of(BRANCH, "Main") == ("pattern", r"[a-z0-9-]+")
    assert problem_of(BRANCH, "main\n") == ("pattern", r"[a-z0-9-]+")
    assert problem_of(BRANCH, "a" * 11) == ("max_length", 10)


def test_missing_values_take_the_default_or_are_required():
    assert check_value(RATE, None) == 0.1
    assert check_value(RATE, "") == 0.1
    assert problem_of(GPUS, None)[0] == "required"
    assert problem_of(GPUS, "  ")[0] == "required"


def test_check_values_reports_every_problem_including_unknown_fields():
    with pytest.raises(GuardrailError) as caught:
        check_values([GPUS, INSTANCE, RATE], {"gpus": "9", "aws_instance": "nope", "extra": "1"})
    assert [(p.field, p.code) for p in caught.value.problems] == [("extra", "unknown_field"), ("gpus", "maximum"), ("aws_instance", "not_allowed")]


def test_check_values_types_everything_in_field_order():
    assert check_values([GPUS, INSTANCE, RATE], {"aws_instance": "ml.m4.xlarge", "gpus": "2"}) == {"gpus": 2, "aws_instance": "ml.m4.xlarge", "rate": 0.1}


def test_problems_carry_field_code_message_and_bound():
    with pytest.raises(GuardrailError) as caught:
        check_value(GPUS, "7")
    assert caught.value.problems[0].to_dict() == {"field": "gpus", "code": "maximum", "message": "gpus must be at most 4 (got 7).", "bound": 4, "value": 7}


def test_json_schema_has_the_shape_wandb_reads():
    assert json_schema(INSTANCE) == {"type": "string", "enum": ["ml.m4.xlarge", "ml.p3.xlarge"]}
    assert json_schema(GPUS) == {"type": "integer", "minimum": 1, "maximum": 4}
    assert json_schema(RATE) == {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.1}
    assert json_schema(Field("d", description="help")) == {"type": "string", "description": "help"}


@pytest.mark.parametrize("raw", ["a\x00b", "\x1b[31mred", "x\x7f"])
def test_control_characters_are_refused_in_text_values(raw):
    assert problem_of(BRANCH, raw)[0] == "invalid_character"
    assert problem_of(Field("free"), raw)[0] == "invalid_character"


def test_control_characters_are_refused_in_definitions():
    assert codes_of_definition(type="string", allowed=["ok", "n\x00"]) == [("allowed", "invalid_character")]
    assert codes_of_definition(type="string", description="a\x00") == [("description", "invalid_character")]


# --- patterns run on RE2 -----------------------------------------------------


@pytest.mark.timeout(120)  # on a backtracking engine this value takes longer than the universe is old
def test_a_catastrophic_pattern_answers_at_once_on_re2():
    field = define_field("word", "string", pattern="(a+)+$")
    assert problem_of(field, "a" * 4000 + "b") == ("pattern", "(a+)+$")
    assert check_value(field, "a" * 4000) == "a" * 4000


@pytest.mark.parametrize(
    "pattern",
    [r"(a)\1", r"(?P<x>a)(?P=x)", "(?=a)a", "(?!b)a", "(?<=a)b", "(?<!a)b", r"a\Z", "(?>a)", "a++", r"\G"],
)
def test_a_pattern_re2_cannot_run_is_refused_at_save(pattern):
    assert codes_of_definition(type="string", pattern=pattern) == [("pattern", "pattern_invalid")]


def test_re2_classes_are_ascii_and_unicode_classes_are_spelled_out():
    assert problem_of(define_field("n", "string", pattern=r"\d+"), "٣")[0] == "pattern"
    assert check_value(define_field("n", "string", pattern=r"\pN+"), "٣") == "٣"
    assert check_value(define_field("w", "string", pattern=r"[[:alpha:]]+\z"), "abc") == "abc"


def test_a_stored_pattern_re2_cannot_run_refuses_typed_values_and_keeps_the_default():
    """Versions saved before patterns ran on RE2 keep launching with their default; a typed value is refused, not
    checked by a backtracking engine, and the problem says who can fix it."""
    stored = Field.from_dict({"name": "tag", "type": "string", "pattern": r"(a)\1", "default": "aa"})
    assert check_value(stored, None) == "aa"
    assert problem_of(stored, "aa") == ("pattern_unusable", r"(a)\1")
    assert [p.code for p in check_definition(stored)] == ["pattern_invalid"]


@pytest.mark.parametrize(
    "raw",
    ["run\u202etxt.exe", "a\u200bb", "\u2066x\u2069", "x\u061c", "a\ufeff", "line\u2028break", "\ud800", "soft\u00adhyphen", "\U000e0041"],
)
def test_invisible_formatting_characters_are_refused_in_text_values(raw):
    assert problem_of(Field("free"), raw)[0] == "invalid_character"
    assert codes_of_definition(type="string", description=raw) == [("description", "invalid_character")]


@pytest.mark.parametrize("raw", ["👩\u200d💻", "می\u200cخواهم", "naïve", "tab\there", "日本語"])
def test_joiners_inside_emoji_and_scripts_are_kept(raw):
    assert check_value(Field("free"), raw) == raw


def test_every_control_format_and_separator_character_is_caught():
    import sys
    import unicodedata

    from launchq.characters import unwanted_character

    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") and char not in "\t\n\r":
            assert unwanted_character(f"x{char}y") == char, hex(code)


def test_a_launch_setting_more_values_than_a_queue_can_have_is_refused_in_one_problem():
    from launchq.limits import MAX_FIELDS

    with pytest.raises(GuardrailError) as caught:
        check_values([GPUS], {f"k{i}": 1 for i in range(50_000)})
    assert [(p.field, p.code, p.bound) for p in caught.value.problems] == [("", "too_many_values", MAX_FIELDS)]


def test_unknown_names_are_listed_up_to_a_cap_and_counted_beyond_it():
    from launchq.limits import MAX_UNKNOWN_SHOWN

    with pytest.raises(GuardrailError) as caught:
        check_values([GPUS], {"gpus": 1, **{("x" * 500) + str(i): 1 for i in range(150)}})
    problems = caught.value.problems
    assert len(problems) == MAX_UNKNOWN_SHOWN + 1 and {p.code for p in problems} == {"unknown_field"}
    assert all(len(p.field) <= 41 and len(p.message) < 200 for p in problems)
    assert "130 more" in problems[-1].message


def test_too_many_allowed_values_is_said_once():
    from launchq.guardrails import MAX_ALLOWED_VALUES

    assert codes_of_definition(type="string", allowed=["same"] * 50_000) == [("allowed", "allowed_too_many")]
    assert len(codes_of_definition(type="string", allowed=["a", "a"])) == 1 and MAX_ALLOWED_VALUES >= 2

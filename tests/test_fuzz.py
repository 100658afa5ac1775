"""A fuzz pass over every door a request comes through; any 5xx fails it.

Each surface gets a bounded number of generated requests from a fixed seed, so a run is repeatable: a failure
names its surface, seed and index, and the request that caused it. Requests mix what clients send with what
attackers send: numbers in other scripts and of thousands of digits, NUL and bidi characters, huge and deeply
nested bodies, wrong types, wrong content types, half-valid configs and tiles. The crafted requests that gave
500s in the audit are regression cases of their own in the modules' tests.
"""

from __future__ import annotations

import base64
import json
import random
import string

import pytest
from django.test import Client

from launchq.guardrails import Field, FieldType
from launchq.models import Agent, ApiToken, Run

SEED = 9
ROUNDS = 60  # per surface: enough to cover every generator's branches, few enough for a shared CI machine

CONFIG = """\
resources:
  gpus: {{gpus}}
  instance: "{{aws_instance}}"
  rate: {{lr}}
output: s3://bucket/${run_id}/{{tag}}
builder:
  accelerator:
    base_image: "nvidia/cuda:{{cuda}}"
"""
FIELDS = (
    Field("gpus", FieldType.INTEGER, minimum=1, maximum=8, default=1),
    Field("aws_instance", FieldType.STRING, allowed=("ml.m4.xlarge", "ml.p3.xlarge"), default="ml.m4.xlarge"),
    Field("lr", FieldType.FLOAT, minimum=0.0, maximum=1.0, default=0.1),
    Field("tag", FieldType.STRING, pattern=r"[a-z0-9-]+", max_length=20, default="main"),
    Field("cuda", FieldType.STRING, default="12.4.1-runtime-ubuntu22.04"),
)
NAMES = ["gpus", "aws_instance", "lr", "tag", "cuda", "nope", "", "a.b", "gpus\x00", "x" * 300]


class Fuzz:
    """Generators of hostile but plausible pieces of requests, from one seeded random source."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def pick(self, *options):
        return self.r.choice(options)

    def number_text(self) -> str:
        return self.pick(
            "2", "-1", "0", "1e3", "²", "٣", "1_000", "0x10", "9" * 5000, "99999999999999999999", "nan", "inf",
            "-0", " 3 ", "3.0", "", "+5", "4" * 63, "1e999", "0.5", "１２",
        )

    def text(self) -> str:
        return self.pick(
            "main", "", " ", "ml.p3.xlarge", "a\x00b", "run\u202etxt.exe", "\u200b", "\ud800", "x" * 5000, "${HOME}",
            "{{gpus}}", "'; DROP TABLE launchq_run; --", "<script>alert(1)</script>", "日本語", "a\nb", "\x1b[31m",
            "".join(self.r.choice(string.printable) for _ in range(self.r.randint(0, 40))),
        )

    @staticmethod
    def sendable(value):
        """Form fields, query strings and paths are UTF-8 on the wire: a lone surrogate arrives as U+FFFD."""
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        if isinstance(value, list):
            return [Fuzz.sendable(v) for v in value]
        if isinstance(value, dict):
            return {Fuzz.sendable(k): Fuzz.sendable(v) for k, v in value.items()}
        return value

    def json_value(self, depth: int = 0):
        kind = self.r.randint(0, 9 if depth < 3 else 5)
        if kind == 0:
            return None
        if kind == 1:
            return self.pick(True, False)
        if kind == 2:
            return self.pick(0, -1, 2, 10**30, 2**63, -(2**63) - 1, 1.5, 1e308, -0.0)
        if kind in (3, 4, 5):
            return self.pick(self.text(), self.number_text())
        if kind in (6, 7):
            return [self.json_value(depth + 1) for _ in range(self.r.randint(0, 3))]
        return {self.pick(*NAMES, self.text()): self.json_value(depth + 1) for _ in range(self.r.randint(0, 3))}

    def values(self):
        values = {self.pick(*NAMES): self.pick(self.json_value(), self.number_text(), self.text()) for _ in range(self.r.randint(0, 6))}
        return self.pick(values, values, values, [1], "gpus=2", None, {f"k{i}": 1 for i in range(300)})

    def body(self, obj) -> tuple[bytes, str]:
        """A JSON body, usually well formed, sometimes not at all."""
        text = json.dumps(obj, ensure_ascii=self.pick(True, False), allow_nan=True)
        kind = self.r.randint(0, 11)
        if kind == 0:
            return text.encode("utf-16", "surrogatepass"), "application/json"
        if kind == 1:
            return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass"), "application/json"
        if kind == 2:
            return text.encode("utf-8", "surrogatepass"), "text/plain"
        if kind == 3:
            return text[: len(text) // 2].encode("utf-8", "surrogatepass"), "application/json"
        if kind == 4:
            return ("[" * 5000 + "]" * 5000).encode("utf-8", "surrogatepass"), "application/json"
        if kind == 5:
            return text.replace('"', "'").encode("utf-8", "surrogatepass"), "application/json; charset=latin-1"
        if kind == 6:
            return b'{"a": 1, "a": 2}', "application/json"
        return text.encode("utf-8", "surrogatepass"), "application/json"

    def config_text(self) -> tuple[str, str]:
        fmt = self.pick("yaml", "json")
        base = CONFIG if fmt == "yaml" else json.dumps({"resources": {"gpus": "{{gpus}}", "instance": "{{aws_instance}}"}, "tag": "{{tag}}"})
        kind = self.r.randint(0, 9)
        if kind == 0:
            return base[: self.r.randint(0, len(base))], fmt
        if kind == 1:
            return base + self.pick("a: {{}}\n", "b: {{ bad name }}\n", "c: {{open\n", "{{k}}: v\n", "d: &a [*a]\n", "e: !!python/object:os.system x\n"), fmt
        if kind == 2:
            return base.replace("gpus", self.text()[:20] or "g"), fmt
        if kind == 3:
            return "".join(f"f{i}: '{{{{f{i}}}}}'\n" for i in range(self.r.choice((5, 250)))), "yaml"
        if kind == 4:
            return "a: " + "9" * 5000 + "\n", fmt
        if kind == 5:
            return self.text(), fmt
        if kind == 6:
            return '{"a": ' + "[" * 200 + "]" * 200 + "}", "json"
        return base, fmt


@pytest.fixture
def world(team, make_queue, admin_user, member_user):
    queue = make_queue(team, "train", CONFIG, "yaml", FIELDS, resource="local-container", user=admin_user)
    _, token = ApiToken.issue(member_user, "fuzz")
    agent, agent_token = Agent.issue(team, "fuzz-box", created_by=admin_user)
    agent.queues.add(queue)
    return {"queue": queue, "token": token, "agent_token": agent_token}


def client_for(user=None) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    return client


def check(failures: list, surface: str, index: int, request, response) -> None:
    if response.status_code >= 500:
        failures.append(f"{surface} #{index} (seed {SEED}): {response.status_code} for {str(request)[:300]}")


def test_fuzz_the_launch_api(world, db):
    fuzz, client, failures = Fuzz(SEED), client_for(), []
    headers = {"Authorization": f"Bearer {world['token']}"}
    for i in range(ROUNDS):
        launch = {
            "project": fuzz.pick("proj", None, 3, "", "nope", "\x00"),
            "name": fuzz.text(),
            "template_variables": fuzz.values(),
            "job": fuzz.pick({"image": "ghcr.io/a/b:1"}, {"image": fuzz.text()}, {"command": fuzz.text(), "source_dir": fuzz.text()}, fuzz.json_value(), None),
            "priority": fuzz.json_value(),
        }
        if fuzz.r.random() < 0.2:
            launch[fuzz.text()[:10] or "extra"] = fuzz.json_value()
        raw, content_type = fuzz.body({k: v for k, v in launch.items() if fuzz.r.random() < 0.9})
        response = client.generic("POST", "/api/teams/ml/queues/train/runs", raw, content_type=content_type, headers=headers)
        check(failures, "api launch", i, raw[:300], response)
        query = {k: fuzz.pick(fuzz.number_text(), fuzz.text()) for k in fuzz.r.sample(["limit", "offset", "state", "x"], 2)}
        response = client.get("/api/teams/ml/queues/train/runs", fuzz.sendable(query), headers=headers)
        check(failures, "api runs", i, query, response)
        run_id = fuzz.sendable(fuzz.pick("x", fuzz.text()[:30] or "y", "%00", "../../etc"))
        check(failures, "api run", i, run_id, client.get(f"/api/teams/ml/runs/{run_id}", headers=headers))
    assert not failures, "\n".join(failures)


def test_fuzz_the_launch_form_and_preview(world, member_user):
    fuzz, client, failures = Fuzz(SEED + 1), client_for(member_user), []
    for i in range(ROUNDS):
        data = {"project": fuzz.pick("proj", fuzz.text()), "name": fuzz.text(), "priority": fuzz.pick("high", fuzz.text(), fuzz.number_text())}
        data.update({f"var.{fuzz.pick(*NAMES)}": fuzz.pick(fuzz.text(), fuzz.number_text()) for _ in range(fuzz.r.randint(0, 5))})
        data.update({k: fuzz.pick(fuzz.text(), "ghcr.io/a/b:1") for k in fuzz.r.sample(["command", "source_dir", "image"], 2)})
        if fuzz.r.random() < 0.5:
            data["config_version"] = fuzz.number_text()
        if fuzz.r.random() < 0.3:
            data["idempotency_key"] = fuzz.text()
        data = fuzz.sendable(data)
        for path in ("/teams/ml/queues/train/launch/", "/teams/ml/queues/train/launch/preview/"):
            headers = {"HTTP_HX_REQUEST": "true"} if fuzz.r.random() < 0.5 else {}
            check(failures, "form " + path, i, data, client.post(path, data, **headers))
        query = fuzz.sendable({fuzz.pick("from", "page", "state"): fuzz.pick(fuzz.text(), fuzz.number_text())})
        check(failures, "form get", i, query, client.get("/teams/ml/queues/train/launch/", query))
        check(failures, "runs tab", i, query, client.get("/teams/ml/queues/train/runs/", query))
    assert not failures, "\n".join(failures)


def test_fuzz_parse_and_save(world, admin_user):
    fuzz, client, failures = Fuzz(SEED + 2), client_for(admin_user), []
    base = "/teams/ml/queues/train/config/"
    for i in range(ROUNDS):
        text, fmt = fuzz.config_text()
        data = {"text": text, "format": fuzz.pick(fmt, fmt, "toml"), "base_version": fuzz.pick("1", "", fuzz.number_text()), "tiles": []}
        for name in fuzz.r.sample(NAMES, fuzz.r.randint(0, 4)):
            data["tiles"].append(name)
            data[f"f.{name}.type"] = fuzz.pick("string", "integer", "float", fuzz.text())
            for part in ("default", "minimum", "maximum", "max_length", "pattern", "description", "new"):
                if fuzz.r.random() < 0.4:
                    data[f"f.{name}.{part}"] = fuzz.pick(fuzz.number_text(), fuzz.text(), "(a+)+$", r"(a)\1", "[", "(?=x)")
            data[f"f.{name}.allowed"] = [fuzz.text() for _ in range(fuzz.r.randint(0, 3))]
        if fuzz.r.random() < 0.4:
            data["tile_action"] = fuzz.pick(f"{fuzz.pick(*NAMES)}:remove:{fuzz.number_text()}", f"{fuzz.pick(*NAMES)}:add", fuzz.text())
        data["tile"] = fuzz.pick(*NAMES)
        data = fuzz.sendable(data)
        for target in ("parse/", "save/", "tile/"):
            headers = {"HTTP_HX_REQUEST": "true"} if fuzz.r.random() < 0.5 else {}
            check(failures, "config " + target, i, {k: str(v)[:80] for k, v in data.items()}, client.post(base + target, data, **headers))
        number = fuzz.pick("1", "0", "99999999999999999999", "٣")
        check(failures, "version", i, number, client.get(f"{base}versions/{number}/"))
        check(failures, "restore", i, number, client.post(f"{base}versions/1/restore/", {"base_version": fuzz.number_text()}))
    assert not failures, "\n".join(failures)


PUSH = """mutation pushToRunQueueByName($entityName: String!, $projectName: String!, $queueName: String!,
  $runSpec: JSONString!, $templateVariableValues: JSONString, $priority: Int) {
  pushToRunQueueByName(entityName: $entityName, projectName: $projectName, queueName: $queueName,
    runSpec: $runSpec, templateVariableValues: $templateVariableValues, priority: $priority) { runQueueItemId runSpec }
}"""


def test_fuzz_graphql(world, db):
    fuzz, client, failures = Fuzz(SEED + 3), client_for(), []
    auth = {"Authorization": "Basic " + base64.b64encode(f"api:{world['token']}".encode()).decode()}
    for i in range(ROUNDS):
        spec = {"entity": fuzz.pick("ml", fuzz.text()), "project": fuzz.pick("proj", fuzz.text()), "docker": fuzz.pick({"docker_image": "python:3.11"}, fuzz.json_value())}
        if fuzz.r.random() < 0.3:
            spec["overrides"] = fuzz.json_value()
        variables = {
            "entityName": fuzz.pick("ml", fuzz.text()),
            "projectName": "model-registry",
            "queueName": fuzz.pick("train", fuzz.text()),
            "runSpec": fuzz.pick(json.dumps(spec), fuzz.text(), fuzz.json_value()),
            "templateVariableValues": fuzz.pick(json.dumps(fuzz.values()), fuzz.text(), fuzz.json_value(), None),
            "priority": fuzz.json_value(),
        }
        query = fuzz.pick(PUSH, PUSH, "{ viewer { username entity } }", fuzz.text(), "query { " * 300 + "}" * 300)
        body = {"query": query, "variables": fuzz.pick(variables, variables, fuzz.json_value()), "operationName": fuzz.pick(None, "pushToRunQueueByName", fuzz.json_value())}
        raw, content_type = fuzz.body(body)
        response = client.generic("POST", "/graphql", raw, content_type=content_type, headers=auth)
        check(failures, "graphql", i, raw[:300], response)
    assert not failures, "\n".join(failures)


def test_fuzz_the_agent_api(world, member_user):
    from launchq.runs import launch_run

    fuzz, client, failures = Fuzz(SEED + 4), client_for(), []
    headers = {"Authorization": f"Bearer {world['agent_token']}"}
    for _ in range(3):
        launch_run(world["queue"], member_user, {}, project="proj", job={"image": "ghcr.io/a/b:1"})
    run_ids = list(Run.objects.values_list("run_id", flat=True))
    for i in range(ROUNDS):
        path, obj = fuzz.pick(
            ("/api/agent/heartbeat", {"status": fuzz.pick("polling", "running", fuzz.text()), "hostname": fuzz.text(), "queues": fuzz.pick(["train"], fuzz.json_value())}),
            ("/api/agent/pop", {"queues": fuzz.pick(["train"], [fuzz.text()], fuzz.json_value()), "hostname": fuzz.text()}),
            ("/api/agent/runs/{run}/heartbeat", {"status": fuzz.pick("running", fuzz.json_value())}),
            ("/api/agent/runs/{run}/state", {"state": fuzz.pick("starting", "running", "finished", "failed", "cancelled", fuzz.text()),
                                             "message": fuzz.text(), "reason": fuzz.text(), "exit_code": fuzz.pick(0, 1, -9, None, 10**20, fuzz.number_text(), fuzz.json_value())}),
            ("/api/agent/runs/{run}/output", {"text": fuzz.text(), "replace": fuzz.json_value()}),
            ("/api/agent/runs/{run}/resolved", {"resolved_config": fuzz.text(), "warnings": fuzz.json_value(), "dockerfile": fuzz.text(), "image_uri": fuzz.text()}),
        )
        path = fuzz.sendable(path.format(run=fuzz.pick(*run_ids, fuzz.text()[:20] or "z")))
        raw, content_type = fuzz.body(obj)
        response = client.generic("POST", path, raw, content_type=content_type, headers=headers)
        check(failures, "agent " + path, i, raw[:300], response)
    assert not failures, "\n".join(failures)

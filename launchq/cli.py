"""launchq's command line: launch runs and follow them from a terminal.

It talks to a launchq server over its JSON API and needs only the server's URL
and a personal API token (from the API tokens page), never the server's code
or database. Standard library only, so this one file runs anywhere Python 3.9+
does; the server hands it out at /cli/launchq-cli.py:

    export LAUNCHQ_URL=https://launchq.example.com
    export LAUNCHQ_TOKEN=lq_...
    python -m launchq.cli queues
    python -m launchq.cli fields demo/sagemaker-queue
    python -m launchq.cli launch demo/sagemaker-queue --project demo-project \\
        --set-var aws_instance=ml.p3.xlarge --image ghcr.io/acme/train:1.0
    python -m launchq.cli runs demo/sagemaker-queue
    python -m launchq.cli run demo RUN_ID
    python -m launchq.cli cancel demo RUN_ID

Exit codes: 0 done; 1 the server refused (guardrails, access, token);
2 the command line is wrong; 3 the server could not be reached or answered
something that is not launchq.

`launch` sends an idempotency key (a new one per invocation, or --idempotency-key)
and tries again with it when the connection drops before the answer arrives, so
a retry gets the run the first try launched instead of a second one.

Everything the server sends is printed with its control characters shown as
escapes (\\x1b, \\u202e ...), so a job's output cannot drive your terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from datetime import datetime
from decimal import Decimal
from http.client import HTTPException
from typing import Any, Callable, Sequence
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, urlopen

VERSION = "1"
REFUSED, USAGE, UNREACHABLE = 1, 2, 3
PRIORITIES = ("critical", "high", "medium", "low")
DONE_STATES = ("finished", "failed", "cancelled", "handed_over")
TYPE_LABELS = {"string": "String", "integer": "Integer", "number": "Float"}
RETRY_WAITS = (0.5, 1.0, 2.0)  # seconds before each new try of a launch whose answer was lost
GATEWAY_ERRORS = (502, 503, 504)  # a proxy or a restarting server: worth another try


class CliError(Exception):
    """Something to tell the person, then exit with `code`."""

    def __init__(self, lines: str | Sequence[str], code: int = REFUSED):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        self.code = code
        super().__init__("\n".join(self.lines))


# --- talking to the server --------------------------------------------------


class Client:
    """A small JSON-over-HTTP client for launchq's API."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"error: the server URL must look like https://launchq.example.com (got {url!r}).", USAGE)
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        return self._send("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self._send("POST", path, body)

    def launch(self, path: str, body: Any, key: str) -> tuple[Any, bool]:
        """POST a launch with its idempotency key, trying again with the same key when the answer is lost.

        Returns the run and whether the server answered with a run this key had already launched.
        """
        tries = len(RETRY_WAITS) + 1
        for attempt, wait in enumerate([*RETRY_WAITS, None], 1):
            try:
                answer, headers = self._exchange("POST", path, body, {"Idempotency-Key": key})
                return answer, headers.get("Idempotent-Replayed") == "true"
            except ApiError as error:
                if error.status not in GATEWAY_ERRORS or wait is None:
                    raise
                trouble = f"the server answered HTTP {error.status}"
            except LostAnswer as lost:
                if wait is None:
                    raise CliError(f"error: cannot reach launchq at {self.base}: {lost.reason} (tried {tries} times).", UNREACHABLE) from None
                trouble = f"no answer from launchq ({lost.reason})"
            warn(f"warning: {trouble}; trying again with the same idempotency key in {wait:g} s ({attempt + 1} of {tries}).")
            time.sleep(wait)
        raise AssertionError("the loop returns or raises")

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self._exchange(method, path, body)[0]
        except LostAnswer as lost:
            raise CliError(f"error: cannot reach launchq at {self.base}: {lost.reason}", UNREACHABLE) from None

    def _exchange(self, method: str, path: str, body: Any = None, extra: dict[str, str] | None = None) -> tuple[Any, Any]:
        """One request: the answer's JSON and headers. `ApiError` for an error status, `LostAnswer` for no answer."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", "User-Agent": f"launchq-cli/{VERSION}", **(extra or {})}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = Request(f"{self.base}/api{path}", data=data, headers=headers, method=method)
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return self._json(response.status, response.headers.get("Content-Type", ""), response.read()), response.headers
        except HTTPError as error:
            raise ApiError(error.code, self._json(error.code, error.headers.get("Content-Type", ""), error.read())) from None
        except (URLError, OSError, HTTPException) as error:
            raise LostAnswer(getattr(error, "reason", None) or f"{type(error).__name__}: {error}") from None

    def _json(self, status: int, content_type: str, raw: bytes) -> Any:
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            raise CliError(
                f"error: {self.base} answered HTTP {status} ({content_type or 'no content type'}), not like launchq's API. Is the URL right?",
                UNREACHABLE,
            ) from None


class LostAnswer(Exception):
    """No answer came: the request may or may not have reached the server."""

    def __init__(self, reason: Any):
        super().__init__(str(reason))
        self.reason = reason


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, dict) else {}

    @property
    def detail(self) -> str:
        detail = self.body.get("detail")
        return detail if isinstance(detail, str) else ""

    def lines(self, not_found: str) -> list[str]:
        """What to print: one `field: message` line per problem, or one line for the whole answer."""
        errors = self.body.get("errors")
        if isinstance(errors, list) and errors and self.status not in (401, 404):
            return [_problem_line(p) for p in errors]
        if self.status == 401:
            return [f"error: the server did not accept the token (401). {self.detail}".rstrip(),
                    "Create a token on the server's API tokens page and pass it with --token or LAUNCHQ_TOKEN."]
        if self.status == 404:
            return [f"error: {not_found}"]
        if self.status >= 500:
            return [f"error: the server failed (HTTP {self.status}); try again, or tell its admins."]
        return [f"error: {self.detail or f'the server answered HTTP {self.status}'}"]


def _problem_line(problem: Any) -> str:
    if not isinstance(problem, dict):
        return f"error: {problem}"
    field = problem.get("field") or ""
    message = problem.get("message") or problem.get("code") or "invalid"
    return f"{field}: {message}" if field else f"error: {message}"


# --- the commands -----------------------------------------------------------


def cmd_whoami(client: Client, args: argparse.Namespace) -> Any:
    me = client.get("/me")
    if args.json:
        return me
    out(f"{me['username']} on {client.base}")
    for team in me["teams"]:
        out(f"  {team['slug']}  ({team['role']})")
    return None


def cmd_queues(client: Client, args: argparse.Namespace) -> Any:
    queues = client.get("/queues")
    if args.json:
        return queues
    if not queues:
        out("No queues: you are in no team with queues yet.")
        return None
    rows = [
        [f"{q['team']}/{q['name']}", q["resource"], _config_state(q), ", ".join(q["fields"]) or "-"]
        for q in queues
    ]
    table(["QUEUE", "RESOURCE", "CONFIG", "TEMPLATE FIELDS"], rows)
    return None


def _config_state(queue: dict[str, Any]) -> str:
    if queue.get("ready") is False:
        return "not ready"
    return f"v{queue['version']}" if queue["version"] else "-"


def cmd_fields(client: Client, args: argparse.Namespace) -> Any:
    team, queue = args.queue
    detail = client.get(f"/teams/{_seg(team)}/queues/{_seg(queue)}")
    if args.json:
        return detail
    version = f"config v{detail['version']} ({detail['format']})" if detail["version"] else "no config saved yet"
    if detail.get("ready") is False:
        version += " · not ready for launches: an admin has not saved its config and guardrails yet"
    out(f"{team}/{queue} · {detail['resource']} · {version}")
    out(f"projects: {', '.join(detail['projects']) or '(none yet)'}")
    if detail["runs_in_containers"]:
        out("job: --image URI, or --source-dir DIR and --command CMD to build one")
    else:
        out("job: --command CMD (and --source-dir DIR)")
    default = detail.get("default_job") or {}
    if default:
        shown = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in default.items())
        out(f"default job (used when you give none): {shown}")
    variables = detail["template_variables"]
    if not variables:
        out("\nNo template fields: launches take the config as it is.")
        return None
    out("")
    width = max(len(n) for n in variables)
    for name, schema in variables.items():
        kind = TYPE_LABELS.get(schema.get("type"), schema.get("type", "?"))
        need = "required" if name in detail["required"] else f"default {_show(schema.get('default'))}"
        out(f"{name.ljust(width)}  {kind.ljust(7)}  {need}")
        for rule in guardrail_lines(schema):
            out(f"{' ' * width}    {rule}")
        if schema.get("description"):
            out(f"{' ' * width}    {schema['description']}")
    return None


def guardrail_lines(schema: dict[str, Any]) -> list[str]:
    """A field's JSON Schema as the rules a person reads."""
    lines = []
    if "enum" in schema:
        lines.append("one of: " + ", ".join(str(v) for v in schema["enum"]))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        lines.append(f"from {_show(low)} to {_show(high)}")
    elif low is not None:
        lines.append(f"at least {_show(low)}")
    elif high is not None:
        lines.append(f"at most {_show(high)}")
    if schema.get("pattern"):
        lines.append(f"matches the pattern {schema['pattern']}")
    if schema.get("maxLength") is not None:
        lines.append(f"at most {schema['maxLength']} characters")
    return lines


def cmd_launch(client: Client, args: argparse.Namespace) -> Any:
    team, queue = args.queue
    body: dict[str, Any] = {"template_variables": parse_set_vars(args.set_var)}
    if args.project:
        body["project"] = args.project
    if args.name:
        body["name"] = args.name
    if args.priority:
        body["priority"] = args.priority
    job = {k: v for k, v in (("command", args.command_line), ("source_dir", args.source_dir), ("image", args.image)) if v}
    if job:
        body["job"] = job
    key = args.idempotency_key or str(uuid.uuid4())
    try:
        run, replayed = client.launch(f"/teams/{_seg(team)}/queues/{_seg(queue)}/runs", body, key)
    except ApiError as error:
        if error.status in (400, 422):
            raise CliError([f"Launch refused; nothing was enqueued on {team}/{queue}:"] + error.lines(""), REFUSED) from None
        raise
    if args.json:
        return run
    if replayed and args.idempotency_key:
        out(f"Already launched with idempotency key {key}, nothing new was enqueued: {run['name']} (run {run['run_id']}) on {team}/{queue}: {run['state']}")
    else:
        out(f"Launched {run['name']} (run {run['run_id']}) on {team}/{queue}: {run['state']}")
    if run["values"]:
        out(f"  values: {_values(run['values'])}")
    if run["links"].get("web"):
        out(f"  {run['links']['web']}")
    out(f"  follow it: python -m launchq.cli run {team} {run['run_id']}")
    return None


def parse_set_vars(items: Sequence[str]) -> dict[str, str]:
    """`name=value` pairs; the value is everything after the first `=` and may hold more of them."""
    values: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CliError(f"error: --set-var takes name=value (got {item!r}).", USAGE)
        if name in values:
            raise CliError(f"error: --set-var {name} is given twice.", USAGE)
        values[name] = value
    return values


def cmd_runs(client: Client, args: argparse.Namespace) -> Any:
    team, queue = args.queue
    page = client.get(f"/teams/{_seg(team)}/queues/{_seg(queue)}/runs", {"limit": args.limit, "offset": args.offset, "state": args.state})
    if args.json:
        return page
    if not page["items"]:
        out(f"No runs on {team}/{queue}{' in state ' + args.state if args.state else ''}" + (" on this page." if page["offset"] else " yet."))
        return None
    rows = [
        [r["run_id"], r["name"], _state(r),
         r.get("priority") or "-", r["project"], r["launched_by"] or "-", _when(r["created_at"]), _values(r["values"]) or "-"]
        for r in page["items"]
    ]
    table(["RUN ID", "NAME", "STATE", "PRIORITY", "PROJECT", "LAUNCHED BY", "CREATED", "VALUES"], rows)
    first = page["offset"] + 1
    out(f"\n{first}-{page['offset'] + len(page['items'])} of {page['count']}, newest first", end="")
    out(f"; next page: --offset {page['offset'] + page['limit']}" if page["next"] else "")
    return None


def cmd_run(client: Client, args: argparse.Namespace) -> Any:
    run = client.get(f"/teams/{_seg(args.team)}/runs/{_seg(args.run_id)}")
    if args.json:
        return run
    show_run(run)
    return None


def _state(run: dict[str, Any]) -> str:
    """A run's state as people read it: "handed over (not followed by launchq)", "running (cancel requested)"."""
    state = run["state"]
    if state == "handed_over":
        return "handed over (a submit command took the job; launchq does not follow it)"
    if run["cancel_requested"] and state not in DONE_STATES:
        return f"{state} (cancel requested)"
    return state


def show_run(run: dict[str, Any]) -> None:
    out(f"{run['name']} (run {run['run_id']})")
    if run["failure_reason"]:
        out(f"FAILED: {run['failure_reason']}")
    facts = [
        ("state", _state(run)),
        ("queue", f"{run['team']}/{run['queue']} (config v{run['config_version']})"),
        ("project", run["project"]),
        ("priority", run["priority"]),
        ("launched by", f"{run['launched_by'] or '-'} at {_when(run['created_at'])}"),
        ("values", _values(run["values"]) or "-"),
        ("job", ", ".join(f"{k}={v}" for k, v in run["job"].items()) or "-"),
        ("agent", run["agent"] or "-"),
        ("image", run["image_uri"] or "-"),
        ("exit code", "-" if run["exit_code"] is None else str(run["exit_code"])),
        ("web", run["links"].get("web") or "-"),
    ]
    width = max(len(k) for k, _ in facts) + 1
    for key, value in facts:
        out(f"{(key + ':').ljust(width)} {value}")
    for warning in run["warnings"]:
        out(f"warning: {warning if isinstance(warning, str) else json.dumps(warning)}")
    out("\nrendered config:")
    out(_indent(run["rendered_config"] or "(empty)"))
    if run["resolved_config"]:
        out("\nresolved config (what the resource received):")
        out(_indent(run["resolved_config"]))
    if run["output"]:
        out("\noutput (tail):")
        out(_indent(run["output"]))
    out("\nhistory:")
    for event in run["events"]:
        who = event["actor"] or (f"agent {event['agent']}" if event["agent"] else "")
        out(f"  {_when(event['at'])}  {event['state'].ljust(9)}  {event['message'] or who}")


def cmd_cancel(client: Client, args: argparse.Namespace) -> Any:
    run = client.post(f"/teams/{_seg(args.team)}/runs/{_seg(args.run_id)}/cancel")
    if args.json:
        return run
    if run["state"] == "cancelled":
        out(f"Cancelled {run['name']} (run {run['run_id']}).")
    else:
        out(f"Asked the agent to stop {run['name']} (run {run['run_id']}, {run['state']}); it becomes cancelled when the agent confirms.")
    return None


# --- the command line -------------------------------------------------------


def queue_ref(text: str) -> tuple[str, str]:
    team, sep, queue = text.partition("/")
    if not sep or not team or not queue or "/" in queue:
        raise argparse.ArgumentTypeError(f"give the queue as TEAM/QUEUE, like demo/sagemaker-queue (got {text!r})")
    return team, queue


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="the launchq server, like https://launchq.example.com (env LAUNCHQ_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="a personal API token, lq_... (env LAUNCHQ_TOKEN)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the server's JSON instead of text")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds to wait for the server (default 30)")

    parser = argparse.ArgumentParser(
        prog="python -m launchq.cli" if __package__ else "python3 " + os.path.basename(sys.argv[0] or "launchq-cli.py"),
        description="Launch runs onto launchq queues within their guardrails, and follow them.",
        parents=[common],
        epilog="Exit codes: 0 done, 1 refused by the server, 2 bad command line, 3 server unreachable.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(func=func)
        return sub

    command("whoami", cmd_whoami, "show whose token this is and their teams")
    command("queues", cmd_queues, "list the queues you can launch onto")
    sub = command("fields", cmd_fields, "show a queue's template fields and their guardrails")
    sub.add_argument("queue", type=queue_ref, metavar="TEAM/QUEUE")

    sub = command("launch", cmd_launch, "launch a run onto a queue")
    sub.add_argument("queue", type=queue_ref, metavar="TEAM/QUEUE")
    sub.add_argument("--project", "-p", help="the team's project to launch into (optional when the team has one)")
    sub.add_argument("--name", "-n", help="the run's name (a readable one is made up when left out)")
    sub.add_argument("--set-var", "-s", action="append", default=[], metavar="NAME=VALUE",
                     help="a template field's value; repeat for each field (the value may contain '=')")
    sub.add_argument("--command", "-c", dest="command_line", metavar="CMD", help="the command to run")
    sub.add_argument("--source-dir", metavar="DIR", help="where the command runs, or the image is built from")
    sub.add_argument("--image", metavar="URI", help="a container image to run (container queues)")
    sub.add_argument("--priority", choices=PRIORITIES, help="default: medium")
    sub.add_argument("--idempotency-key", metavar="KEY",
                     help="names this launch: the same launch sent again with the same KEY gets the run it launched, not a"
                          " second one (default: a new key per invocation, reused when the CLI tries again itself)")

    sub = command("runs", cmd_runs, "list a queue's runs, newest first")
    sub.add_argument("queue", type=queue_ref, metavar="TEAM/QUEUE")
    sub.add_argument("--limit", type=int, default=20, help="runs per page, 1-100 (default 20)")
    sub.add_argument("--offset", type=int, default=0, help="runs to skip (default 0)")
    sub.add_argument("--state", choices=("pending", "leased", "starting", "running", "finished", "failed", "cancelled", "handed_over"))

    sub = command("run", cmd_run, "show one run: values, configs, state and history")
    sub.add_argument("team", metavar="TEAM")
    sub.add_argument("run_id", metavar="RUN_ID")

    sub = command("cancel", cmd_cancel, "cancel a run (yours, or any as a team admin)")
    sub.add_argument("team", metavar="TEAM")
    sub.add_argument("run_id", metavar="RUN_ID")
    return parser


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    url = getattr(args, "url", None) or environ.get("LAUNCHQ_URL", "")
    token = getattr(args, "token", None) or environ.get("LAUNCHQ_TOKEN", "")
    not_found = _not_found_message(args)
    try:
        if not url:
            raise CliError("error: which launchq server? Set LAUNCHQ_URL or pass --url https://launchq.example.com", USAGE)
        if not token:
            raise CliError("error: no API token. Create one on the server's API tokens page, then set LAUNCHQ_TOKEN or pass --token.", USAGE)
        client = Client(url, token.strip(), getattr(args, "timeout", 30.0))
        try:
            result = args.func(client, args)
        except ApiError as error:
            raise CliError(error.lines(not_found), UNREACHABLE if error.status >= 500 else REFUSED) from None
    except CliError as error:
        for line in error.lines:
            warn(line)
        return error.code
    if result is not None:
        text = json.dumps(result, indent=2, ensure_ascii=False)
        sys.stdout.write(UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")  # still JSON, and safe
    return 0


def _not_found_message(args: argparse.Namespace) -> str:
    if hasattr(args, "run_id"):
        return f"no run {args.run_id} in team {args.team} (or you are not in that team)."
    if hasattr(args, "queue"):
        team, queue = args.queue
        return f"no queue {team}/{queue} (or you are not in team {team}). `queues` lists the ones you can use."
    return "not found."


# --- output -----------------------------------------------------------------


# What a terminal could take as a command: C0 controls but newline and tab (ESC starts colour, cursor and title
# sequences; CR overwrites a line), DEL, C1 controls (0x9b is a one-byte CSI), and the bidi controls that
# reorder what is shown.
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str, one_line: bool = False) -> str:
    """Text from the server as it may go to a terminal: `\\x1b`, `\\u202e` instead of what they would do.

    Newlines and tabs stay (unless `one_line`); a carriage return ends a line, as in a progress bar's output.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if one_line:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
    return UNSAFE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def out(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(shown(text) + end)


def warn(text: str) -> None:
    sys.stderr.write(shown(text) + "\n")


def table(headers: list[str], rows: list[list[str]]) -> None:
    cells = [[shown(str(cell), one_line=True) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _seg(text: str) -> str:
    return quote(text, safe="")


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else plain_number(value)


def _values(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={plain_number(v)}" for k, v in values.items())


def plain_number(value: Any) -> str:
    """A number as people write it: 0.00001, not 1e-05.

    This file runs on its own, so it carries its own copy of `launchq.numbers.plain_number`
    (tests/test_numbers.py checks that the two agree).
    """
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    text = repr(value)
    if "e" not in text:
        return text
    written = format(Decimal(text), "f")
    if len(written.lstrip("-")) <= 24:
        return written
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


def _when(text: str | None) -> str:
    if not text:
        return "-"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip("\n").splitlines())


if __name__ == "__main__":
    sys.exit(main())

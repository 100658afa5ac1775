"""Talking to the launchq server: JSON over HTTP with the agent token, and what can go wrong.

Standard library only. Errors are sorted by what the agent should do about them:
`ServerUnavailable` (wait and try again), `LeaseLost` (let the run go: another
agent may hold it now), `Unauthorized` (the token is revoked: stop), and
`Refused` (the server will never accept this report: drop it).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

USER_AGENT = "launchq-agent/1"


class ServerUnavailable(Exception):
    """The server did not answer, or answered that it cannot right now (5xx, 429)."""


class Refused(Exception):
    """The server answered no, and asking again will not change that."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(Refused):
    """The agent token was refused: revoked, mistyped, or for another server."""


class LeaseLost(Refused):
    """The run is no longer this agent's: its lease ran out or another agent holds it."""


class Server:
    def __init__(self, url: str, token: str, timeout: float = 20.0):
        self.base = url.rstrip("/") + "/api/agent"
        self.token = token
        self.timeout = timeout

    def post(self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any] | None:
        """POST JSON to /api/agent/<path>; the decoded answer, or None for 204 No Content."""
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(
            f"{self.base}/{path.lstrip('/')}",
            data=data,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                if response.status == 204:
                    return None
                return _decode(response.read())
        except urllib.error.HTTPError as error:
            raise _error_for(error.code, error.read()) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServerUnavailable(f"{self.base}: {reason}") from None


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        raise ServerUnavailable("the server's answer was not JSON (a proxy error page?)") from None
    return value if isinstance(value, dict) else {"value": value}


def _error_for(status: int, raw: bytes) -> Exception:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or status)
    message = str(body.get("message") or body.get("detail") or raw[:200].decode("utf-8", "replace"))
    if status >= 500 or status in (408, 429):
        return ServerUnavailable(f"{status}: {message}")
    if status == 401:
        return Unauthorized(status, "unauthorized", message)
    if status == 409 and code == "lease_lost":
        return LeaseLost(status, code, message)
    return Refused(status, code, message)

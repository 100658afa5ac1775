"""Reports to the server, in order, kept until delivered.

The job does not wait for the server: its state moves and output go into a
queue that one thread delivers in order, retrying while the server is down or
restarting. Output is sent as the whole tail each time, so a newer tail simply
replaces an undelivered older one and a report retried after a lost answer
does no harm. When the server says the lease is lost, the run's remaining
reports are dropped: the run is no longer this agent's to report on.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from launchq.agent.client import LeaseLost, Refused, Server, ServerUnavailable, Unauthorized

log = logging.getLogger("launchq.agent")

RETRY_FIRST = 0.5
RETRY_MAX = 10.0


@dataclass
class Report:
    run_id: str
    path: str
    body: dict[str, Any]
    kind: str = ""
    sending: bool = field(default=False, compare=False)


class Reporter:
    def __init__(
        self,
        server: Server,
        *,
        on_answer: Callable[[str, dict[str, Any]], None] = lambda run_id, answer: None,
        on_lost: Callable[[str], None] = lambda run_id: None,
        on_unauthorized: Callable[[], None] = lambda: None,
    ):
        self.server = server
        self.on_answer = on_answer
        self.on_lost = on_lost
        self.on_unauthorized = on_unauthorized
        self._items: deque[Report] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="launchq-reporter", daemon=True)
        self._thread.start()

    def send(self, run_id: str, path: str, body: dict[str, Any], *, kind: str = "") -> None:
        """Queue a report. A report of a `kind` replaces that run's undelivered one of the same kind."""
        with self._cv:
            if kind:
                for item in list(self._items):
                    if item.run_id == run_id and item.kind == kind and not item.sending:
                        self._items.remove(item)
            self._items.append(Report(run_id, path, body, kind))
            self._cv.notify_all()

    def pending(self, run_id: str | None = None) -> bool:
        with self._cv:
            return any(run_id is None or item.run_id == run_id for item in self._items)

    def drop(self, run_id: str) -> None:
        with self._cv:
            for item in [i for i in self._items if i.run_id == run_id and not i.sending]:
                self._items.remove(item)
            self._cv.notify_all()

    def wait_idle(self, timeout: float, run_id: str | None = None) -> bool:
        """Wait until everything (for `run_id`) is delivered or dropped; whether it was."""
        with self._cv:
            return self._cv.wait_for(lambda: not any(run_id is None or i.run_id == run_id for i in self._items), timeout)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def _loop(self) -> None:
        delay = RETRY_FIRST
        outage = False
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._items or self._closed)
                if self._closed and not self._items:
                    return
                item = self._items[0]
                item.sending = True
            try:
                answer = self.server.post(item.path, item.body)
            except ServerUnavailable as error:
                if not outage:
                    log.warning("Server unavailable (%s); keeping reports and retrying.", error)
                    outage = True
                with self._cv:
                    item.sending = False
                    if self._closed:
                        return
                    self._cv.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            except LeaseLost as error:
                log.warning("Run %s: lease lost (%s); dropping its reports.", item.run_id, error.message)
                self._finish(item)
                self.drop(item.run_id)
                self.on_lost(item.run_id)
                continue
            except Unauthorized as error:
                log.error("The server refused the agent token: %s", error.message)
                self._finish(item)
                self.drop(item.run_id)
                self.on_unauthorized()
                continue
            except Refused as error:
                log.warning("Run %s: the server refused %s: %s", item.run_id, item.path, error)
                self._finish(item)
                continue
            if outage:
                log.info("Server reachable again; reports delivered.")
            outage = False
            delay = RETRY_FIRST
            self._finish(item)
            if answer:
                self.on_answer(item.run_id, answer)

    def _finish(self, item: Report) -> None:
        with self._cv:
            if self._items and self._items[0] is item:
                self._items.popleft()
            self._cv.notify_all()

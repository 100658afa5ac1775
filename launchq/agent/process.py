"""Running one command for a run: start it, collect the tail of its output, stop it.

A command runs in its own session, so stopping it stops what it started too,
and (on Linux) it is killed if the agent itself is killed, so a run whose
lease runs out is not left running twice. Commands are argument lists: no
shell ever reads a member's text.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field

OUTPUT_TAIL = 64 * 1024
STOP_GRACE_SECONDS = 10.0

try:
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - no libc to load
    _LIBC = None
_PR_SET_PDEATHSIG = 1


class RunFailed(Exception):
    """The run cannot go on; `reason` says why in plain words and becomes the run's failure reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Step:
    """One command of a run: building its image, pushing it, or the job itself."""

    argv: list[str]
    what: str
    cwd: str | None = None
    env: dict[str, str] | None = None
    stdin: bytes | None = None
    cleanup: list[str] | None = field(default=None, repr=False)

    @property
    def title(self) -> str:
        """`what`, to start a sentence with."""
        return self.what[:1].upper() + self.what[1:]

    @property
    def shown(self) -> str:
        return shlex.join(self.argv)


class Tail:
    """The last `limit` characters of everything written, and whether that changed since last taken."""

    def __init__(self, limit: int = OUTPUT_TAIL):
        self.limit = limit
        self._text = ""
        self._changed = False
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._text = (self._text + text)[-self.limit :]
            self._changed = True

    def take(self) -> str | None:
        """The tail if it changed since the last take, else None."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            return self._text

    @property
    def text(self) -> str:
        with self._lock:
            return self._text


class JobProcess:
    def __init__(self, step: Step, tail: Tail):
        self.step = step
        self.tail = tail
        self.proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the command; raise `RunFailed` when it cannot start at all."""
        try:
            self.proc = subprocess.Popen(
                self.step.argv,
                cwd=self.step.cwd,
                env=self.step.env,
                stdin=subprocess.PIPE if self.step.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_agent if _LIBC is not None else None,
            )
        except OSError as error:
            raise RunFailed(f"{self.step.title} could not start: {error.strerror or error} ({self.step.argv[0]}).") from None
        self._threads.append(_thread(self._pump))
        if self.step.stdin is not None:
            self._threads.append(_thread(self._feed))

    def wait(self, timeout: float) -> int | None:
        """The exit status once the command has ended, waiting at most `timeout` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def finish(self, timeout: float = 3.0) -> None:
        """Wait for the output to drain (a child that kept the pipe open is not waited for longer)."""
        for thread in self._threads:
            thread.join(timeout)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the command's whole session, SIGKILL it after `grace` seconds; the exit status."""
        assert self.proc is not None
        code = self._signal_and_wait(signal.SIGTERM, grace)
        if code is None:
            code = self._signal_and_wait(signal.SIGKILL, 5.0)
        else:
            self._signal(signal.SIGKILL)  # whatever it started that outlived it
        if self.step.cleanup:
            try:
                subprocess.run(self.step.cleanup, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.finish()
        return code

    def _signal_and_wait(self, signum: int, timeout: float) -> int | None:
        self._signal(signum)
        return self.wait(timeout)

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.tail.write(decoder.decode(chunk))
        self.tail.write(decoder.decode(b"", final=True))

    def _feed(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(self.step.stdin or b"")
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


def describe_exit(code: int) -> str:
    """`status 3`, or `signal SIGKILL` for a command a signal ended."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _die_with_agent() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

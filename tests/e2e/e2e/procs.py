"""Server processes (Envoy, nginx) started in their own process group: the
parts every launcher shares."""

import os
import signal
import subprocess
import time

from . import client
from .ports import HOST


def _kill(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(proc, grace=5.0):
    """SIGTERM the process group of `proc`, SIGKILL it after `grace`
    seconds, then SIGKILL whatever is left in the group. Returns the exit
    code (None when there was no process)."""
    if proc is None:
        return None
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    if proc.poll() is None:
        _kill(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill(pgid, signal.SIGKILL)
            proc.wait(timeout=10)
    _kill(pgid, signal.SIGKILL)  # anything left in the group (there should be nothing)
    return proc.returncode


class StartResult:
    """What happened when a server was started expecting it to fail."""

    def __init__(self, exited, returncode, ready, log):
        self.exited = exited
        self.returncode = returncode
        self.ready = ready
        self.log = log

    def __repr__(self):
        return "StartResult(exited=%r, returncode=%r, ready=%r)" % (
            self.exited, self.returncode, self.ready)


def read_log(path):
    """A process's log file as text ("" before it exists)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


class ServerProcess:
    """What the Envoy and nginx launchers share. A subclass sets `proc`,
    `log_path` and `ports` (listener name -> port) and provides `_spawn()`,
    `_is_ready()`, `start(timeout)` and `error_lines()`."""

    proc = None

    def log_text(self):
        return read_log(self.log_path)

    def start_expect_failure(self, timeout=20.0):
        """Start expecting the server to refuse its configuration. Returns a
        StartResult once it exited or `timeout` passed (it is then stopped).
        `ready` tells whether it became ready in the meantime."""
        self._spawn()
        deadline = time.monotonic() + timeout
        ready = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                return StartResult(True, code, ready, self.log_text())
            if not ready and self._is_ready():
                ready = True
                # give a late failure a moment, then report
                deadline = min(deadline, time.monotonic() + 2.0)
            time.sleep(0.1)
        self.stop()
        return StartResult(False, None, ready, self.log_text())

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=5.0):
        return stop_group(self.proc, grace)

    def restart(self, timeout=30.0):
        """Stop and start afresh (new ports, empty caches)."""
        self.stop()
        self.proc = None
        return self.start(timeout)

    def tail(self, n=80):
        return "\n".join(self.log_text().splitlines()[-n:])

    def _failure_report(self):
        errors = self.error_lines()
        text = "last log lines:\n" + self.tail(80)
        if errors:
            text = "errors:\n" + "\n".join(errors[-20:]) + "\n" + text
        return text

    def port(self, listener_name):
        return self.ports[listener_name]

    def url(self, listener_name, path="/"):
        return "http://%s:%d%s" % (HOST, self.ports[listener_name], path)

    def request(self, listener_name, method="GET", path="/", headers=None, body=None,
                timeout=20.0):
        return client.request(self.ports[listener_name], method, path, headers, body,
                              timeout=timeout)

"""Stopping a server process started in its own process group."""

import os
import signal
import subprocess


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

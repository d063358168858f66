"""Starting, finding and stopping the stack's server processes, by PID file.

Each server runs in the foreground of its own session, so the PID we record is the server
itself (the JVM or influxd), and `stack down` stops exactly what `stack up` started.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A server could not be installed, started or reached; the message says where to look."""


def not_answering(server: str, address: str, reason) -> StackError:
    """The error for a server that gave no answer at all, saying where to look."""
    return StackError(f"{server} did not answer {address} ({reason}). Is it up? `bin/streamad "
                      f"stack status` says what runs, and the servers' logs are in "
                      f"{logs_dir()}.")


def open_url(request: urllib.request.Request, timeout_s: float, server: str):
    """`urllib.request.urlopen`, where no answer at all (refused, reset, timed out) is
    `not_answering`. An HTTP error status is raised as it is: the server answered."""
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError:
        raise
    except OSError as error:  # URLError wraps a refused or reset connection
        # Without the query string: an InfluxQL statement is long, and says nothing here.
        address = request.full_url.split("?", 1)[0]
        raise not_answering(server, f"{request.get_method()} {address}",
                            getattr(error, "reason", error)) from error


def state_dir() -> Path:
    """Runtime data, logs and PID files; override with STREAMAD_STATE_DIR."""
    return Path(os.environ.get("STREAMAD_STATE_DIR", "~/.local/state/streamad")).expanduser()


def cache_dir() -> Path:
    """Downloads and builds, kept across runs; override with STREAMAD_CACHE_DIR."""
    return Path(os.environ.get("STREAMAD_CACHE_DIR", "~/.cache/streamad")).expanduser()


def logs_dir() -> Path:
    path = state_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by this user alone (mode 0600 from the start): for
    the credentials the stack makes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that was there keeps its mode through os.open
    with os.fdopen(fd, "w") as out:
        out.write(text)


def pid_file(name: str) -> Path:
    path = state_dir() / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{name}.pid"


def running_pid(name: str) -> int | None:
    """The PID of server `name` if we started it and it is still alive."""
    path = pid_file(name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not _alive(pid):
        path.unlink(missing_ok=True)
        return None
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def start_process(name: str, argv: Sequence[str], env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> int:
    """Start `argv` detached from us, logging to logs/<name>.out, and record its PID."""
    out = open(logs_dir() / f"{name}.out", "ab")
    process = subprocess.Popen(
        list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
    )
    out.close()
    pid_file(name).write_text(str(process.pid))
    log.debug("started %s as PID %d: %s", name, process.pid, " ".join(argv))
    return process.pid


def stop_process(name: str, timeout_s: float = 30.0) -> bool:
    """Stop server `name` if we started it, with everything it started: SIGTERM, then SIGKILL
    after `timeout_s`.

    A server runs in a process group of its own (`start_process`), and the group is what gets
    the signals: a Flink TaskManager's Python UDF workers are its children, and a SIGTERM to
    the JVM alone leaves them running, orphaned."""
    pid = running_pid(name)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _alive(pid):
        log.warning("%s (PID %d) did not stop within %.0f s; killing it", name, pid, timeout_s)
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            _reap(pid)
            time.sleep(0.1)
    _reap(pid)  # our own child stays a zombie until reaped
    # What the server started and did not stop with it (the group outlives its leader).
    _signal_group(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    return True


def _signal_group(pid: int, signum: int) -> None:
    """Signal the process group `pid` leads; a server whose group is gone is skipped."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_free_port(host: str, port: int, setting: str) -> None:
    """Refuse to start a server where something that is not ours already listens."""
    if port_open(host, port):
        raise StackError(f"something else listens on {host}:{port}; stop it or point "
                         f"{setting} at a free port.")


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, name: str,
               interval_s: float = 0.5) -> None:
    """Poll `check` until true; on time-out, or if server `name` died, raise with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # the server is still coming up; keep polling
            pass
        if running_pid(name) is None:
            raise StackError(f"{name} exited while waiting for {what}; see {log_tail_hint(name)}")
        time.sleep(interval_s)
    raise StackError(f"{name} did not become ready ({what}) within {timeout_s:.0f} s; "
                     f"see {log_tail_hint(name)}")


def log_tail_hint(name: str) -> str:
    return str(logs_dir() / f"{name}.out")


def run_checked(argv: Sequence[str], what: str, log_name: str, **kwargs) -> None:
    """Run an install step, keeping its output in logs/<log_name>.log for when it fails."""
    log_path = logs_dir() / f"{log_name}.log"
    with open(log_path, "ab") as out:
        result = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT, **kwargs)
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise StackError(f"{what} failed (exit {result.returncode}); the end of {log_path}:\n"
                         + "\n".join(tail))

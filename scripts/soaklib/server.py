"""The tailsrv processes the soak starts, measures through /proc, and kills by PID."""

from __future__ import annotations

import os
import resource
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from . import limits

#: The source tree the server is run from.
ROOT = Path(__file__).resolve().parent.parent.parent

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class ServerProcess:
    """A tailsrv process the soak started: measured through /proc, killed by PID.

    ``nofile`` starts it as under ``ulimit -n``; otherwise it inherits the soak's
    raised limit. Its log (stderr) accumulates over restarts in ``log_path``.

    ``template`` (``scripts/soak --server``) runs another server instead, such as
    the yardstick: a command with ``{port}`` and ``{path}``, taking none of the
    case's tailsrv options, ready once it accepts a connection.
    """

    #: A command template for another server, or None for this tree's tailsrv.
    template: Optional[str] = None

    def __init__(self, work: Path, path: Path, *args: str, nofile: Optional[int] = None) -> None:
        self.path, self.args, self.nofile = path, args, nofile
        self.port = free_port()
        self.log_path = work / f"tailsrv-{self.port}.log"
        self.starts = 0
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self, wait: bool = True) -> None:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        if self.template is not None:
            command = shlex.split(self.template.format(port=self.port,
                                                       path=shlex.quote(str(self.path))))
        else:
            command = [sys.executable, "-m", "tailsrv", "-p", str(self.port), *self.args,
                       str(self.path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=dict(os.environ, PYTHONPATH=path),
                                         preexec_fn=self._limit)
        self.starts += 1
        if wait:
            deadline = time.monotonic() + limits.WAIT
            while not self._ready():
                if not self.alive or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start; see {self.log_path}")
                time.sleep(0.02)

    def _ready(self) -> bool:
        if self.template is None:
            return self.log_count("listening on port") >= self.starts
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def _limit(self) -> None:
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory(self, key: str = "VmRSS") -> int:
        """A /proc/PID/status figure in bytes: VmRSS now, VmHWM the peak; 0 once
        the process has died (the case's health check then says so)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as status:
                for line in status:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
        return 0

    def cpu(self) -> float:
        """User + system CPU seconds used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def fds(self) -> int:
        """Open descriptors; 0 once the process has died."""
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return 0

    def log_count(self, *needles: str) -> int:
        with open(self.log_path, errors="replace") as log:
            return sum(1 for line in log if any(n in line for n in needles))

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(limits.WAIT)

    def stop(self) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

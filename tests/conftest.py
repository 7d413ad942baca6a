"""Shared test fixtures: a real tailsrv process on a free loopback port, and
clients with timeouts on every read."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import pytest

#: Every socket operation in the tests gives up after this many seconds.
IO_TIMEOUT = 10.0


def script(name: str) -> str:
    """The installed console script ``name``, next to this Python if possible."""
    path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    assert path, f"console script {name!r} is not installed (pip install -e .)"
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect(port: int, header: Optional[bytes] = b"0\n", host: str = "127.0.0.1",
            timeout: float = IO_TIMEOUT) -> socket.socket:
    """A client connected to the server, its header (if any) sent."""
    sock = socket.create_connection((host, port), timeout=timeout)
    if header is not None:
        sock.sendall(header)
    return sock


def read_exactly(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes (each recv bounded by the socket's timeout)."""
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError(f"connection closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (or a reset)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def append(path, data: bytes) -> None:
    """Append to a file in one write(), as a logging program does."""
    with open(path, "ab") as f:
        f.write(data)


def assert_silent(sock: socket.socket, seconds: float = 0.3) -> None:
    """Nothing arrives on ``sock`` for ``seconds``."""
    timeout = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return
    finally:
        sock.settimeout(timeout)
    raise AssertionError(f"expected silence, got {data!r}")


def wait_for(predicate, timeout: float = IO_TIMEOUT, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Descriptor(NamedTuple):
    target: str  #: what it points at: a path, ``socket:[N]``, ``anon_inode:inotify``...
    flags: int  #: its open-file flags (``O_NONBLOCK``, ``O_CLOEXEC``...)


def descriptors(pid: int) -> Dict[int, Descriptor]:
    """The open descriptors of process ``pid``, read while it runs: one that it
    closes while we look is left out, not an error."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = next(line for line in info if line.startswith("flags:"))
        except FileNotFoundError:
            continue
        found[int(fd)] = Descriptor(target, int(flags.split()[1], 8))
    return found


class Server:
    """A ``tailsrv`` console-script process; stderr goes to a log file.

    ``prefix`` is a command that runs it (e.g. ``prlimit --nofile=64``).
    Started means READY=1 received on ``$NOTIFY_SOCKET`` (unless ``env`` gives
    one), so the file is open: a connect alone succeeds as soon as the port
    is bound, before the server has started."""

    #: Starts tried when the free port chosen was taken meanwhile (by another
    #: process on this machine, between `free_port` and the server's bind).
    ATTEMPTS = 3

    def __init__(self, path: Path, args: List[str], log: Path, env=None,
                 prefix: Sequence[str] = ()) -> None:
        self.path = path
        self.log_path = log
        own_notify = env is None or "NOTIFY_SOCKET" not in env
        env = dict(os.environ if env is None else env)
        self._notify: Optional[socket.socket] = None
        if own_notify:
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(f"\0tailsrv-test-{os.getpid()}-{id(self)}")
            self._notify.settimeout(0.05)
            env["NOTIFY_SOCKET"] = "@" + self._notify.getsockname()[1:].decode()
        for attempt in range(self.ATTEMPTS):
            self.port = free_port()
            self.args = [*prefix, script("tailsrv"), "-p", str(self.port), *args, str(path)]
            self._log = open(log, "wb")
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=self._log, env=env)
            try:
                if self._notify is not None:
                    wait_for(self._ready)
                wait_for(self._accepting)
                return
            except AssertionError:
                if attempt + 1 == self.ATTEMPTS or \
                        f"cannot listen on port {self.port}: Address already in use" not in self.log:
                    raise
                self._log.close()

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"tailsrv exited early ({self.proc.returncode}):\n{self.log}")
        try:
            return b"READY=1" in self._notify.recv(256)
        except socket.timeout:
            return False

    def _accepting(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"tailsrv exited early ({self.proc.returncode}):\n{self.log}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = IO_TIMEOUT) -> str:
        wait_for(lambda: text in self.log, timeout)
        return self.log

    def descriptors(self) -> Dict[int, Descriptor]:
        return descriptors(self.proc.pid)

    def open_fds(self) -> int:
        return len(self.descriptors())

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = IO_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def restart(self) -> None:
        """Kill the process (SIGKILL: no goodbyes) and start it again on the same port."""
        self.kill()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        wait_for(self._accepting)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(IO_TIMEOUT)
        self._log.close()
        if self._notify is not None:
            self._notify.close()


@pytest.fixture
def logfile(tmp_path: Path) -> Path:
    """The file the server streams, created with some content."""
    path = tmp_path / "app.log"
    path.write_bytes(b"hello\nworld\n")
    return path


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """A directory for a server of several files: ``a.log`` and ``b.log``."""
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "a.log").write_bytes(b"one\ntwo\n")
    (directory / "b.log").write_bytes(b"bee\n")
    return directory


@pytest.fixture
def start_server(tmp_path: Path):
    """start_server(path, *args) -> a running Server, killed after the test."""
    servers: List[Server] = []

    def start(path: Path, *args: str, env=None, prefix: Sequence[str] = ()) -> Server:
        server = Server(path, list(args), tmp_path / f"tailsrv-{len(servers)}.log", env=env,
                        prefix=prefix)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def spawn():
    """spawn(args, **popen_kwargs) -> Popen of a console script (the first arg
    names it), stdin closed and output captured; killed after the test."""
    procs: List[subprocess.Popen] = []

    def start(args: List[str], **kwargs) -> subprocess.Popen:
        kwargs = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                  "stderr": subprocess.PIPE, **kwargs}
        proc = subprocess.Popen([script(args[0]), *args[1:]], **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=IO_TIMEOUT)

"""The rotation case: a log rotated again and again under --follow-name while
mirrors and followers read it, some of them stopped through rotations."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

from . import limits
from .report import MiB, Result, mib
from .rig import server_health
from .server import ServerProcess

#: Bytes per append: a burst of log lines.
CHUNK = 64 * 1024

#: Seconds the writer goes on appending to the old file after a rename, as an
#: application does until logrotate's ``postrotate`` tells it to reopen its log.
REOPEN_AFTER = 0.05


class RotatedLog(threading.Thread):
    """Appends random bytes to PATH at ``rate`` through one descriptor; `rotate`
    does what logrotate's create mode does (PATH.1 to PATH.2 ..., PATH to PATH.1,
    a new empty PATH), and the writer reopens PATH shortly after."""

    def __init__(self, path: Path, rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.path, self.rate = path, rate
        self.rng = random.Random(seed)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        self.written = 0
        self.rotations = 0
        self.halt = threading.Event()
        self._reopen_at = None
        self._lock = threading.Lock()

    def run(self) -> None:
        began = time.monotonic()
        while not self.halt.is_set():
            ahead = self.written / self.rate - (time.monotonic() - began)
            if ahead > 0:
                self.halt.wait(ahead)
                continue
            with self._lock:
                if self._reopen_at is not None and time.monotonic() >= self._reopen_at:
                    os.close(self.fd)
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                    self._reopen_at = None
                os.write(self.fd, self.rng.randbytes(CHUNK))
                self.written += CHUNK

    def rotate(self) -> None:
        with self._lock:
            for number in range(self.rotations, 0, -1):
                os.rename(f"{self.path}.{number}", f"{self.path}.{number + 1}")
            os.rename(self.path, f"{self.path}.1")
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            self.rotations += 1
            self._reopen_at = time.monotonic() + REOPEN_AFTER

    def files(self) -> List[Path]:
        """Oldest first, the current one last."""
        return [Path(f"{self.path}.{n}") for n in range(self.rotations, 0, -1)] + [self.path]

    def stop(self) -> None:
        self.halt.set()
        self.join(limits.WAIT)
        os.close(self.fd)


def _chain(path: Path) -> List[Path]:
    """A tssync mirror's files, oldest first."""
    older = sorted(path.parent.glob(path.name + ".[0-9]*"), key=lambda p: -int(p.suffix[1:]))
    return [*older, path]


def _first_difference(got: List[Path], expected: List[Path]) -> int:
    """-1 when the files of ``got``, concatenated, equal those of ``expected``;
    else the offset of the first byte that differs (or is missing)."""
    def stream(paths):
        for path in paths:
            with open(path, "rb") as f:
                while True:
                    block = f.read(MiB)
                    if not block:
                        break
                    yield block
    a, b = b"".join(stream(got)), b"".join(stream(expected))
    if a == b:
        return -1
    return next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))


def rotation(work: Path, rotations: int = 10, clients: int = 10, interval: float = 2.0,
             rate: float = 4e6, grace: float = 0.5) -> Result:
    """``rotations`` rotations, ``interval`` s apart, of a file written at ``rate``
    and served with --follow-name, while half the ``clients`` mirror it with
    tssync and half print it with tscat; a third of them are stopped (SIGSTOP)
    through two rotations (one if there are only two)."""
    result = Result(f"log rotation: {rotations} rotations, {clients} clients",
                    "every client ends with every file, in order, byte for byte: 0 mismatches")
    tools = {name: shutil.which(name, path=os.path.dirname(sys.executable))
             for name in ("tssync", "tscat")}
    if not all(tools.values()):
        result.check(False, "tssync and tscat must be installed next to this Python")
        return result
    log = RotatedLog(work / "rotated.log", rate, seed=12)
    server = ServerProcess(work, log.path, "--follow-name", "--rotation-grace", str(grace))
    address = f"127.0.0.1:{server.port}"
    outputs: List[Path] = []
    procs: List[subprocess.Popen] = []
    with open(work / "rotation-clients.log", "ab") as errors:
        for i in range(clients):
            out = work / f"rotation-client-{i}.out"
            if i % 2:
                with open(out, "wb") as stdout:
                    procs.append(subprocess.Popen([tools["tscat"], address], stdout=stdout,
                                                  stderr=errors, stdin=subprocess.DEVNULL))
            else:
                procs.append(subprocess.Popen([tools["tssync"], address, str(out)],
                                              stderr=errors, stdin=subprocess.DEVNULL))
            outputs.append(out)
    stopped = procs[::3]
    stop, resume = rotations // 2, min(rotations // 2 + 1, rotations - 1)  # around these
    received = lambda i: _chain(outputs[i]) if i % 2 == 0 else [outputs[i]]  # noqa: E731
    try:
        deadline = time.monotonic() + limits.WAIT
        while server.log_count("connected: header 0,") < clients and time.monotonic() < deadline:
            time.sleep(0.05)
        log.start()
        for number in range(rotations):
            time.sleep(interval)
            if number == stop:
                for proc in stopped:
                    proc.send_signal(signal.SIGSTOP)
            log.rotate()
            if number == resume:
                for proc in stopped:
                    proc.send_signal(signal.SIGCONT)
        time.sleep(interval)
        log.stop()
        expected = log.files()
        total = sum(p.stat().st_size for p in expected)

        def size(i: int) -> int:
            return sum(p.stat().st_size for p in received(i) if p.exists())
        deadline = time.monotonic() + limits.WAIT
        while time.monotonic() < deadline and any(size(i) < total for i in range(clients)):
            time.sleep(0.1)
        mismatches = 0
        for i in range(clients):
            differs = _first_difference(received(i), expected)
            if differs >= 0:
                mismatches += 1
                result.failures.append(f"client {i} ({'tssync' if i % 2 == 0 else 'tscat'}) "
                                       f"differs from the files from byte {differs:,}")
        mirrored = sum(len(received(i)) == len(expected) for i in range(0, clients, 2))
        refused = server.log_count("refused (file replaced")
        result.figures.update({
            "file written": f"{mib(log.written)} at {rate / 1e6:g} MB/s",
            "rotations": f"{rotations}, {interval:g} s apart (--rotation-grace {grace:g})",
            "clients": f"{clients} ({(clients + 1) // 2} tssync, {clients // 2} tscat), "
                       f"{len(stopped)} of them stopped through {resume - stop + 1} rotations",
            "bytes received and checked": f"{sum(size(i) for i in range(clients)):,}",
            "mismatches": mismatches,
            "mirrors with one file per rotated file": f"{mirrored} / {(clients + 1) // 2}",
            "resumes refused (a client moving to the next file)":
                f"{refused} (clients x rotations: {clients * rotations})",
        })
        result.check(not mismatches, f"{mismatches} clients differ from the files")
        result.check(mirrored == (clients + 1) // 2, "a mirror's files differ in number")
        result.check(refused == clients * rotations, "not one refused resume per client "
                     "and rotation")
        server_health(result, server)
    finally:
        for proc in procs:  # started by this case: ended by PID
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if log.is_alive():
            log.stop()
        server.stop()
    return result

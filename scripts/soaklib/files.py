"""The file the server streams: written by the soak, read back to verify clients."""

from __future__ import annotations

import bisect
import os
import random
import threading
import time
from pathlib import Path
from typing import Optional

from . import limits
from .report import MiB

#: Bytes read per step when looking for where a plain negative offset started.
LOCATE_BLOCK = 4 << 20


class GrowingFile:
    """The file the server streams: random bytes appended by the soak, read back
    with ``pread`` to check what clients received. It remembers how many newlines
    each append held, so line positions can be checked without rescanning.

    A `Writer` thread may be appending: whoever needs ``size`` to match what is
    on disk (the server cannot have seen more) holds ``lock``.
    """

    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self._write = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._read = os.open(path, os.O_RDONLY)
        self.size = 0
        self.lock = threading.Lock()
        #: The furthest byte any client has received: the server's idea of the
        #: size (which lags the writer) was at least that when it sent it.
        self.served = 0
        self._ends = [0]   # offset where each append ended
        self._lines = [0]  # newlines before that offset

    def append(self, n: int) -> None:
        data = self.rng.randbytes(n)
        rest = memoryview(data)
        with self.lock:
            while rest:
                rest = rest[os.write(self._write, rest):]
            self._lines.append(self._lines[-1] + data.count(b"\n"))
            self._ends.append(self.size + n)
            self.size += n

    def read(self, offset: int, n: int) -> bytes:
        return os.pread(self._read, n, offset)

    def lines_before(self, position: int) -> int:
        """Newlines in the file before ``position`` (which must be written)."""
        i = bisect.bisect_right(self._ends, position) - 1
        begin = self._ends[i]
        return self._lines[i] + self.read(begin, position - begin).count(b"\n")

    def lines_after(self, position: int, size: int) -> int:
        """Lines in [position, size) as ``tail -n`` counts them: a last line
        without its newline counts."""
        count = self.lines_before(size) - self.lines_before(position)
        return count + (size > position and self.read(size - 1, 1) != b"\n")

    def locate(self, prefix: bytes, low: int, high: int) -> Optional[int]:
        """Where in [low, high] the file holds ``prefix``, searched from the high end."""
        end = high
        while end >= low:
            begin = max(low, end - LOCATE_BLOCK)
            found = self.read(begin, end - begin + len(prefix)).find(prefix)
            if found >= 0:
                return begin + found
            end = begin - 1
        return None

    def close(self) -> None:
        os.close(self._write)
        os.close(self._read)


class Writer(threading.Thread):
    """Appends to a `GrowingFile` at ``rate`` bytes/s for at most ``duration`` s."""

    #: Bytes per append: 50 appends a second at 50 MB/s.
    chunk = MiB

    def __init__(self, file: GrowingFile, rate: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.file, self.rate, self.duration = file, rate, duration
        self.written = 0
        self.elapsed = 0.0
        self.halt = threading.Event()

    def run(self) -> None:
        began = time.monotonic()
        while not self.halt.is_set():
            self.elapsed = time.monotonic() - began
            if self.elapsed >= self.duration:
                break
            ahead = self.written / self.rate - self.elapsed
            if ahead > 0:
                self.halt.wait(min(ahead, self.duration - self.elapsed))
                continue
            self.file.append(self.chunk)
            self.written += self.chunk
        self.elapsed = time.monotonic() - began

    def stop(self) -> None:
        self.halt.set()
        self.join(limits.WAIT)

    @property
    def achieved(self) -> str:
        return f"{self.written / max(self.elapsed, 1e-9) / 1e6:.1f} MB/s"

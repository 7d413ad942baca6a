"""Cold pages: knowing whether a range of the file is in the page cache, and
bringing it there without blocking the event loop.

``sendfile`` from pages that are not in the page cache reads the disk in the
system call, and the one event loop waits for it: every caught-up follower's
append waits behind a catching-up client's disk reads (Kafka's KAFKA-7504; for
tailsrv, issue 19 and docs/performance.md). So before a catching-up client's
``sendfile`` the fanout asks `cached` how much of the range is in memory: a
one-byte ``preadv`` with ``RWF_NOWAIT`` every `STRIDE` bytes fails with
``EAGAIN`` at the first page that is not. A range that starts cold is read by a
thread (`Warmer`), into a buffer that is thrown away, and is sent
from the loop, as before, once it is in memory.

A filesystem that cannot answer ``RWF_NOWAIT`` says ``EOPNOTSUPP``: tmpfs (and
ramfs), which is memory anyway, is then taken as warm, served as before this
module; any other (FUSE, so a network filesystem) is *slow* (`slow`): any read
of it may wait, and what a thread read need not be in the cache when the loop
sends it (FUSE drops a file's cached pages when it sees the file change). So a
slow file is never read in the loop at all: the watch reads its appends in a
thread, and its clients are sent their chunks by ``sendfile`` in a thread
(`Warmer.run`).
"""

from __future__ import annotations

import errno
import os
from collections import deque
from typing import Any, Callable, Deque, Dict

from gevent.hub import get_hub
from gevent.monkey import get_original

#: Bytes between two probes of a range. A probe costs about a microsecond, so
#: a 4 MiB chunk costs 16 (under 1% of sending it); the kernel reads ahead in
#: windows of 128 KiB and more, so a cold page between two warm probes is rare,
#: and costs one short read at most.
STRIDE = 256 * 1024

#: Filesystems whose files are all memory: they cannot answer ``RWF_NOWAIT``
#: and need not.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})

#: Bytes a warming thread reads per system call (its buffer).
READ = 1024 * 1024

_probe = [bytearray(1)]
_start_thread = get_original("_thread", "start_new_thread")
_SimpleQueue = get_original("queue", "SimpleQueue")
#: Whether a device (``st_dev``) that cannot answer ``RWF_NOWAIT`` is memory.
_memory: Dict[int, bool] = {}


def cached(fd: int, offset: int, count: int) -> int:
    """How many bytes from ``offset`` (at most ``count``) are in the page cache,
    as far as a probe every `STRIDE` bytes tells: 0 when the first page is not.
    When the filesystem cannot tell: ``count`` if it is memory, else 0. On any
    other error, ``count``: the ``sendfile`` that follows meets it and reports it."""
    preadv, nowait, probe = os.preadv, os.RWF_NOWAIT, _probe
    at, end = offset, offset + count
    try:
        while at < end:
            preadv(fd, probe, at, nowait)
            at += STRIDE
    except BlockingIOError:
        return at - offset
    except OSError as error:
        if error.errno == errno.EOPNOTSUPP and not _is_memory(fd):
            return 0
    return count


def slow(fd: int) -> bool:
    """Whether reading ``fd``'s file may wait without the file saying so: it
    cannot answer ``RWF_NOWAIT`` and is not memory (FUSE: a network
    filesystem, say)."""
    try:
        os.preadv(fd, _probe, 0, os.RWF_NOWAIT)
    except OSError as error:
        return error.errno == errno.EOPNOTSUPP and not _is_memory(fd)
    return False


def _is_memory(fd: int) -> bool:
    """Whether the file of ``fd`` is on a filesystem of `MEMORY_FILESYSTEMS`
    (its mount found in ``/proc/self/mountinfo`` by device number, once)."""
    device = os.fstat(fd).st_dev
    memory = _memory.get(device)
    if memory is None:
        memory = _memory[device] = _filesystem(device) in MEMORY_FILESYSTEMS
    return memory


def _filesystem(device: int) -> str:
    """The type of the filesystem mounted from ``device`` ("" when unknown)."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open("/proc/self/mountinfo") as mounts:
            for line in mounts:
                fields, _, rest = line.partition(" - ")
                if fields.split()[2] == wanted:
                    return rest.split()[0]
    except OSError:
        pass
    return ""


class Warmer:
    """Threads for file work that may wait (reading ranges into the page
    cache, or any `run` job), and news of each job done, in the event loop.
    Real threads even in a monkey-patched process (the originals of
    ``_thread`` and ``queue``): a patched one would wait in the loop. Its
    threads start with the first job, one per `THREADS`."""

    #: Reads at once: one keeps a catch-up's disk busy; a second lets two
    #: catching-up clients (or a slow filesystem) overlap.
    THREADS = 2

    def __init__(self) -> None:
        self._todo = _SimpleQueue()
        self._done: Deque[Callable[[], None]] = deque()
        self._wake = get_hub().loop.async_(ref=False)
        self._wake.start(self._deliver)
        self._threads = 0

    def warm(self, fd: int, offset: int, count: int, done: Callable[[], None]) -> None:
        """Bring ``count`` bytes from ``offset`` into the page cache; ``done()``
        is then called in the event loop (a read error is left for the
        ``sendfile`` that follows to meet)."""
        self.run(lambda: _read(fd, offset, count), lambda _: done())

    def run(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Call ``job()`` in a thread, then ``done(its result)`` in the event
        loop; an OSError it raises is the result."""
        if self._threads < self.THREADS:
            self._threads += 1
            _start_thread(self._work, ())
        self._todo.put((job, done))

    def close(self) -> None:
        """Stop the threads once their reads are done; drop the news."""
        for _ in range(self._threads):
            self._todo.put(None)
        self._wake.stop()
        self._wake.close()

    def _work(self) -> None:
        while (item := self._todo.get()) is not None:
            job, done = item
            try:
                result = job()
            except OSError as error:
                result = error
            self._done.append((done, result))
            self._wake.send()

    def _deliver(self) -> None:
        done = self._done
        while done:
            call, result = done.popleft()
            call(result)


def _read(fd: int, offset: int, count: int) -> None:
    """In a thread: read the range and throw it away (the GIL is released in
    the system call)."""
    buffer = memoryview(bytearray(min(READ, count)))
    end = offset + count
    try:
        while offset < end:
            n = os.preadv(fd, [buffer[:min(READ, end - offset)]], offset)
            if n <= 0:
                return
            offset += n
    except OSError:  # the sendfile that follows meets it, and reports it
        return

"""The watched file: one read-only descriptor shared by every client, its size,
and news of every change.

inotify says *that* something happened, ``fstat`` says *what*: events are only
hints (the kernel coalesces them, and drops them on queue overflow), so after
every batch the size is read again and that size is the truth. Nothing polls: an
idle server sleeps in the event loop until the kernel has news.

While PATH does not exist the parent directory is watched for it to appear. Once
open, the file is watched through ``/proc/self/fd`` so the watch follows the very
inode being served, whatever happens to the name.

A file on a slow filesystem (`tailsrv.server.coldread.slow`: FUSE, so a
network filesystem) has its appends read by a thread, so that the event loop
never waits for that filesystem: the listeners hear of the growth once the
read is done.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Callable, List, Optional, Tuple

import gevent
from gevent.event import Event

from inotify_simple import INotify, flags, parse_events

from . import coldread

log = logging.getLogger(__name__)

#: Growth shows up as MODIFY. These events get an inotify descriptor of their
#: own, whose reads are never parsed: it only says "read the size again" (the
#: kernel merges a MODIFY into an identical one still queued, so its queue holds
#: one event). The append path is then one read into a buffer kept for it, no
#: parsing and no objects (bench lat1, see docs/performance.md).
GROWTH_EVENTS = flags.MODIFY
#: What else can happen to the open file, parsed when it happens: deletion shows
#: as ATTRIB with a link count of 0 (DELETE_SELF never fires while we hold the
#: file open); a rename as MOVE_SELF.
FATE_EVENTS = flags.ATTRIB | flags.MOVE_SELF | flags.DELETE_SELF
#: A missing file can appear by creation or by being renamed into place; one
#: that appeared unreadable can become readable (ATTRIB: logrotate's create mode
#: makes the new file 0600, then gives it the old one's mode and owner).
DIR_EVENTS = flags.CREATE | flags.MOVED_TO | flags.ATTRIB
#: Tested in a loop over events: an int, not an enum lookup.
MOVE_SELF = int(flags.MOVE_SELF)

#: Most bytes an append may add for the watch to read them itself (``pread`` at
#: the old size): a short read is the new size, with no ``fstat``, and the bytes
#: read are handed to the listeners, who send that one copy to every caught-up
#: client (cheaper per client than ``sendfile`` for small appends: see
#: docs/performance.md). A longer append is sized by ``lseek`` and sent by
#: ``sendfile``.
TAIL = 16 * 1024

#: Bytes asked of inotify per read: room for thousands of events, so one read
#: drains a burst (the kernel hands out whole events; any rest stays queued and
#: wakes us again), with no FIONREAD ioctl first (as ``INotify.read`` makes).
INOTIFY_READ = 64 * 1024

#: Called with the new size, whether the file shrank, and the bytes appended
#: since the size before (when the watch read them, else None): a view of the
#: watch's buffer, good until the listener returns.
Listener = Callable[[int, bool, Optional[memoryview]], None]


def appended(fd: int, size: int) -> Tuple[int, Optional[bytes]]:
    """The file's size now that it was written to, and the bytes appended
    since ``size`` when there are fewer than `TAIL` (else None): what was
    appended is read at once (a short read ends at the end of the file), or,
    when that is not all of it, the end is asked for (``lseek``: ``fstat``
    builds a result of a dozen fields in Python). For a slow file's thread:
    `FileWatch.grew` does the same inline, into its kept buffer (which a
    thread may not share), with no call on the append path."""
    tail = os.pread(fd, TAIL, size)
    if 0 < len(tail) < TAIL:
        return size + len(tail), tail
    return os.lseek(fd, 0, os.SEEK_END), None


class NotARegularFile(OSError):
    """PATH names something that cannot be streamed (a directory, a FIFO...)."""


class FileWatch:
    """Follows one file from the moment it exists until it is gone.

    ``size`` is the current size, ``fd`` the shared descriptor (None until the
    file exists), ``truncations`` counts how often the file shrank, and
    ``gone`` is set when the file was deleted or moved and ``linger`` is off,
    or when following it failed (then ``error`` says why). ``unnamed`` is set
    when the file was deleted or moved and ``linger`` is on: PATH no longer
    leads to it, and the file is still served.
    Listeners registered with `subscribe` hear of every size change, in the
    event loop's callback for inotify's descriptor: they must not block.
    """

    #: What the log says when the file is gone from PATH and its clients end.
    ending = "closing every client and exiting"

    #: What the log says when the file is gone from PATH and ``linger`` keeps it.
    lingering = "still serving the open file (--linger-after-file-is-gone)"

    def __init__(self, path: str, linger: bool = False) -> None:
        self.path = os.path.abspath(path)
        self.linger = linger
        self.fd: Optional[int] = None
        self.size = 0
        self.truncations = 0
        self.gone = Event()
        self.unnamed = Event()
        self.error: Optional[OSError] = None
        self._changed = Event()
        self._listeners: List[Listener] = []
        self._growth: Optional[INotify] = None
        #: The growth descriptor's number, once open (``INotify.fd`` is a
        #: property: a call per append).
        self._growth_fd: Optional[int] = None
        self._fate: Optional[INotify] = None
        buffer = bytearray(INOTIFY_READ)
        self._drain = [buffer]
        #: Where `grew` reads an append: the drain's buffer, whose events are
        #: thrown away once read (no buffer of 16 KiB made and freed per append).
        self._tail = memoryview(buffer)[:TAIL]
        self._into_tail = [self._tail]
        self._dir_watch: Optional[int] = None
        self._watchers: List = []
        self._lingering = False
        #: Whether the file is on a slow filesystem: its appends read by a thread.
        self.slow = False
        self._reader: Optional[coldread.Warmer] = None
        self._reading = self._again = False

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self, patient: bool = False) -> None:
        """Open the file if it exists, else watch for it; then follow it.

        Raises OSError (with a readable message) when the parent directory
        is missing or PATH is not a regular file, or, unless `patient` (a file
        that replaces a rotated one), when it cannot be read.
        """
        self._growth = INotify(nonblocking=True)
        self._growth_fd = self._growth.fd
        self._fate = INotify(nonblocking=True)
        directory = os.path.dirname(self.path)
        try:
            self._dir_watch = self._fate.add_watch(directory, DIR_EVENTS)
        except OSError as error:
            self._close_inotify()
            raise OSError(error.errno, f"cannot watch {directory}: {error.strerror}") from None
        if not self._open(patient):
            log.info("%s does not exist yet; waiting for it to appear", self.path)
        # Persistent watchers whose callbacks run in the hub: no greenlet switch
        # between inotify's wake and the clients' sendfile (bench lat1).
        loop = gevent.get_hub().loop
        for inotify, callback in ((self._growth, self.grew), (self._fate, self._on_fate)):
            watcher = loop.io(inotify.fd, 1)
            watcher.start(callback)
            self._watchers.append(watcher)

    def close(self) -> None:
        self._stop_watching()
        self._close_inotify()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._reader is not None:
            self._reader.close()

    def wait_for_change(self, size: int) -> None:
        """Block until the size is no longer ``size``. Once the file is gone
        that never happens: the server is stopping, and ends the waiter."""
        changed = self._changed
        if self.size == size:
            changed.wait()

    def _open(self, patient: bool = False) -> bool:
        """Open PATH if it is there (False if not, or, when `patient`, if it
        cannot be read yet), and follow it."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return False
        except PermissionError as error:
            if not patient:
                raise
            log.warning("cannot read %s yet (%s); waiting until it can be read",
                        self.path, error.strerror)
            return False
        try:
            self.check(fd)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.slow = coldread.slow(fd)
        self._watch_inode(fd)
        log.info("following %s", self.path)
        self.refresh(moved=False)
        return True

    def check(self, fd: int) -> None:
        """Raise (`NotARegularFile`) unless the file just opened may be served."""
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{self.path} is not a regular file")

    def _watch_inode(self, fd: int) -> None:
        """Watch the open file itself, no longer its directory."""
        self._growth.add_watch(f"/proc/self/fd/{fd}", GROWTH_EVENTS)
        self._fate.add_watch(f"/proc/self/fd/{fd}", FATE_EVENTS)
        self._fate.rm_watch(self._dir_watch)
        self._dir_watch = None

    def _close_inotify(self) -> None:
        for inotify in (self._growth, self._fate):
            if inotify is not None:
                inotify.close()

    def _stop_watching(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
            watcher.close()
        self._watchers.clear()

    def grew(self) -> None:
        """The file was written to: drain the news (when the watch has a
        growth descriptor of its own: this is its callback; the catalog calls
        it for its files), then learn the new size by reading what was
        appended (a short read ends at the end of the file) or, when that is
        not all of it, by asking where the end is (``lseek``: ``fstat`` builds
        a result of a dozen fields in Python), and tell the listeners. One
        function, no call between the wake and the pass (bench lat1). A slow
        file's appends are read by a thread instead (`_grew_slowly`)."""
        try:
            if self._growth_fd is not None:
                os.readv(self._growth_fd, self._drain)
            if self.slow:
                self._grew_slowly()
                return
            fd, size = self.fd, self.size
            n = os.preadv(fd, self._into_tail, size)
            if 0 < n < TAIL:
                self._resized(size + n, self._tail[:n])
            else:
                self._resized(os.lseek(fd, 0, os.SEEK_END), None)
        except BlockingIOError:  # woken for nothing
            pass
        except OSError as error:
            self.failed(error)

    def _grew_slowly(self) -> None:
        """`grew` for a slow file: `appended` in a thread, one at a time (and
        once more after it when the file was written to meanwhile)."""
        if self._reading:
            self._again = True
            return
        if self._reader is None:
            self._reader = coldread.Warmer()
        self._reading, self._again = True, False
        fd, size = self.fd, self.size
        self._reader.run(lambda: appended(fd, size), lambda result: self._read_slowly(size, result))

    def _read_slowly(self, size: int, result) -> None:
        """What a thread found the file to be after ``size``: news, unless the
        size moved meanwhile (`refresh`), which makes it old news: then read
        again from the new size."""
        self._reading = False
        if self.fd is None or self.gone.is_set():  # closed or given up meanwhile
            return
        if isinstance(result, OSError):
            self.failed(result)
            return
        if size == self.size:
            self._resized(*result)
        else:
            self._again = True
        if self._again:
            self._grew_slowly()

    def _on_fate(self) -> None:
        """The file was deleted, moved or had its attributes changed, or
        (while it is missing) something appeared in its directory."""
        try:
            events = parse_events(os.read(self._fate.fd, INOTIFY_READ))
            if self.fd is None:
                self._appeared(events)
            else:
                self.refresh(moved=any(event.mask & MOVE_SELF for event in events))
        except BlockingIOError:  # woken for nothing
            pass
        except OSError as error:
            self.failed(error)

    def _appeared(self, events) -> None:
        name = os.path.basename(self.path)
        if any(e.name == name or e.mask & flags.Q_OVERFLOW for e in events):
            self.appeared()

    def appeared(self) -> None:
        """PATH may be there now: follow it if it is a file to serve."""
        try:
            self._open(patient=True)
        except NotARegularFile as error:
            log.error("%s; still waiting for a regular file", error)

    def failed(self, error: OSError) -> None:
        log.error("stopped following %s: %s", self.path, error)
        self.error = error
        self._gone()

    def _gone(self) -> None:
        self._stop_watching()
        self.gone.set()

    def refresh(self, moved: bool) -> None:
        """Whether the file still has its name (``moved``: it was renamed),
        and its size."""
        st = os.fstat(self.fd)
        if (moved or st.st_nlink == 0) and not self._lingering:
            how = "moved" if moved else "deleted"
            if not self.linger:
                log.warning("%s was %s; %s", self.path, how, self.ending)
                self._gone()
                return
            log.warning("%s was %s; %s", self.path, how, self.lingering)
            self._lingering = True
            self.unnamed.set()
        self._resized(st.st_size, None)

    def _resized(self, size: int, tail: Optional[memoryview]) -> None:
        """Tell the listeners of a new size (and ``tail``, the bytes appended
        since the size before, when they were read), then wake
        `wait_for_change`'s waiters, if any (an append with none makes no
        object and schedules nothing)."""
        if size == self.size:
            return
        shrank = size < self.size
        if shrank:
            self.truncations += 1
            log.warning("%s was truncated from %d to %d bytes", self.path, self.size, size)
        self.size = size
        for listener in self._listeners:
            listener(size, shrank, tail)
        if self._changed.linkcount():
            changed, self._changed = self._changed, Event()
            changed.set()

"""The watched file: one read-only descriptor shared by every client, its size,
and news of every change.

inotify says *that* something happened, ``fstat`` says *what*: events are only
hints (the kernel coalesces them, and drops them on queue overflow), so after
every batch the size is read again and that size is the truth. Nothing polls: an
idle server sleeps in the event loop until the kernel has news.

While PATH does not exist the parent directory is watched for it to appear. Once
open, the file is watched through ``/proc/self/fd`` so the watch follows the very
inode being served, whatever happens to the name.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Callable, List, Optional

import gevent
from gevent.event import Event

from inotify_simple import INotify, flags, parse_events

log = logging.getLogger(__name__)

#: Growth shows up as MODIFY; deletion as ATTRIB with a link count of 0 (DELETE_SELF
#: never fires while we hold the file open); a rename as MOVE_SELF.
FILE_EVENTS = flags.MODIFY | flags.ATTRIB | flags.MOVE_SELF | flags.DELETE_SELF
#: A missing file can appear by creation or by being renamed into place.
DIR_EVENTS = flags.CREATE | flags.MOVED_TO
#: Tested per append: an int, not an enum lookup.
MOVE_SELF = int(flags.MOVE_SELF)

#: Bytes asked of inotify per read: room for thousands of events, so one read
#: drains a burst (the kernel hands out whole events; any rest stays queued and
#: wakes us again), with no FIONREAD ioctl first (as ``INotify.read`` makes):
#: one syscall less per append.
INOTIFY_READ = 64 * 1024

#: Called with the new size and whether the file shrank.
Listener = Callable[[int, bool], None]


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
        self._inotify: Optional[INotify] = None
        self._dir_watch: Optional[int] = None
        self._watcher = None
        self._lingering = False

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        """Open the file if it exists, else watch for it; then follow it.

        Raises OSError (with a readable message) when the parent directory
        is missing or PATH is not a regular file.
        """
        self._inotify = INotify(nonblocking=True)
        directory = os.path.dirname(self.path)
        try:
            self._dir_watch = self._inotify.add_watch(directory, DIR_EVENTS)
        except OSError as error:
            self._inotify.close()
            raise OSError(error.errno, f"cannot watch {directory}: {error.strerror}") from None
        if not self._open():
            log.info("%s does not exist yet; waiting for it to appear", self.path)
        # A persistent watcher whose callback runs the listeners in the hub:
        # no greenlet switch between inotify's wake and the clients' sendfile
        # (bench lat1, see docs/performance.md).
        self._watcher = gevent.get_hub().loop.io(self._inotify.fd, 1)
        self._watcher.start(self._on_events)

    def close(self) -> None:
        self._stop_watching()
        if self._inotify is not None:
            self._inotify.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def wait_for_change(self, size: int) -> None:
        """Block until the size is no longer ``size``. Once the file is gone
        that never happens: the server is stopping, and ends the waiter."""
        changed = self._changed
        if self.size == size:
            changed.wait()

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotARegularFile(f"{self.path} is not a regular file")
        self.fd = fd
        self._inotify.add_watch(f"/proc/self/fd/{fd}", FILE_EVENTS)
        self._inotify.rm_watch(self._dir_watch)
        self._dir_watch = None
        log.info("following %s", self.path)
        self._refresh(moved=False)
        return True

    def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None

    def _on_events(self) -> None:
        try:
            self._follow()
        except OSError as error:
            log.error("stopped following %s: %s", self.path, error)
            self.error = error
            self._stop_watching()
            self.gone.set()

    def _follow(self) -> None:
        """Read the events there are, then learn what they mean."""
        try:
            events = parse_events(os.read(self._inotify.fd, INOTIFY_READ))
        except BlockingIOError:  # woken for nothing
            return
        if self.fd is None:
            name = os.path.basename(self.path)
            if any(e.name == name or e.mask & flags.Q_OVERFLOW for e in events):
                try:
                    self._open()
                except NotARegularFile as error:
                    log.error("%s; still waiting for a regular file", error)
            return
        self._refresh(moved=any(e.mask & MOVE_SELF for e in events))
        if self.gone.is_set():
            self._stop_watching()

    def _refresh(self, moved: bool) -> None:
        st = os.fstat(self.fd)
        if (moved or st.st_nlink == 0) and not self._lingering:
            how = "moved" if moved else "deleted"
            if not self.linger:
                log.warning("%s was %s; closing every client and exiting", self.path, how)
                self.gone.set()
                return
            log.warning("%s was %s; %s", self.path, how, self.lingering)
            self._lingering = True
            self.unnamed.set()
        if st.st_size == self.size:
            return
        shrank = st.st_size < self.size
        if shrank:
            self.truncations += 1
            log.warning("%s was truncated from %d to %d bytes", self.path, self.size, st.st_size)
        self.size = st.st_size
        for listener in self._listeners:
            listener(self.size, shrank)
        self._notify_waiters()

    def _notify_waiters(self) -> None:
        changed, self._changed = self._changed, Event()
        changed.set()

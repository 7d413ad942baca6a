"""Following PATH's name across log rotation (``--follow-name``, like ``tail -F``).

When PATH is renamed away or deleted, a new file is expected at PATH: new
connections get it (waiting for it to appear if need be), while the old file
stays open for the clients still reading it. Each of them receives every byte of
the old file, including what the writer appends after the rename, and is closed
once it has caught up and the old file has been quiet for ``grace`` seconds.

It then reconnects with a resume proof (see `tailsrv.protocol`) of the old
file's last bytes, and `resume` gives it the file that came *after* its own,
from byte 0, even when PATH has been rotated again since: the old files form a
chain, each kept open until the clients of the older ones have moved on, so a
client stopped through several rotations still gets every file in turn. A proof
that holds for an old file it has not finished resumes it where it was.

`Rotation` works on a server's current file, the pair ``server.watch`` and
``server.fanout`` that new connections are given, and on
``server.resume_holds``, ``server.new_watch`` (the watch of the new file),
``server.retired`` (told when an old file is closed) and ``server.stop``
(when the new file cannot be followed). It replaces the pair when the file
loses its name, and
retires the old one: it ends the old file's clients through their `Fanout`
(with `Retired`), and closes the old fanout and its watch. That is all it touches.
"""

from __future__ import annotations

import logging
import time
from typing import List, Optional, Set, Tuple

import gevent
from gevent.pool import Group

from .stream import Fanout
from .watch import FileWatch

log = logging.getLogger(__name__)

#: Seconds the old file must stay the same size before its caught-up clients are
#: closed: long enough for a writer to reopen its log after logrotate's
#: ``postrotate`` (a signal, a few milliseconds) with room to spare.
GRACE = 3.0

#: Seconds between looks at a retiring file's clients once it is quiet: a client
#: that was behind is closed at most this long after it caught up. Only while a
#: rotation is under way; an idle server never wakes for it.
CHECK = 0.25

#: Seconds a finished old file stays open after its last client left, so that
#: the client finds the file that came after it when it reconnects (its first
#: attempt is 0.25 s after the close; later ones wait up to 30 s).
KEEP = 10.0


class Retired(Exception):
    """The client read the whole of a file that PATH no longer names."""


class RotatingWatch(FileWatch):
    """A `FileWatch` that keeps serving its file after PATH is moved or deleted,
    and says why in the log."""

    lingering = "its clients finish it; new clients get the new file at PATH (--follow-name)"

    def __init__(self, path: str) -> None:
        super().__init__(path, linger=True)


class Rotation:
    """Swaps a server's file for the new one at PATH, and retires the old one."""

    def __init__(self, server, grace: Optional[float] = None) -> None:
        self.server = server
        self.grace = GRACE if grace is None else grace
        self.retiring: List[Fanout] = []  # the old files, oldest first
        self.finished: Set[Fanout] = set()  # old files quiet for the grace period
        self._retirements = Group()

    def start(self) -> None:
        """Watch the server's current file for losing its name."""
        self.server.watch.unnamed.rawlink(self._replace)

    def stop(self) -> None:
        """Stop retiring, and close the old files (the server ends their clients)."""
        self._retirements.kill()
        for old in list(self.retiring):
            self._close(old)

    def resume(self, request) -> Tuple[Fanout, bool]:
        """For a resume proof the current file does not hold: the file it
        continues and False, or the file to start from byte 0 and True (the
        resume is refused): the one after the client's own old file if the
        client had all of that, or the current one if it is none of the old."""
        chain = [*self.retiring, self.server.fanout]
        for index in range(len(chain) - 2, -1, -1):
            fanout = chain[index]
            if self.server.resume_holds(request, fanout.watch):
                if request.offset < fanout.watch.size or fanout not in self.finished:
                    return fanout, False
                return chain[index + 1], True
        return chain[-1], True

    def _replace(self, _event) -> None:
        server = self.server
        if server.closed:  # stopping: nothing more to serve
            return
        old = server.fanout
        watch = server.new_watch(old.watch.path)
        try:
            watch.start(patient=True)
        except OSError as error:
            log.error("cannot follow the new %s: %s; exiting", watch.path, error)
            old.watch.error = error
            gevent.spawn(server.stop)
            return
        watch.gone.rawlink(server._file_gone)
        watch.unnamed.rawlink(self._replace)
        server.watch, server.fanout = watch, Fanout(watch, server.client_ended)
        self.retiring.append(old)
        self._retirements.spawn(self._retire, old)

    def _retire(self, fanout: Fanout) -> None:
        """End the old file's clients as they finish it; close the file once
        they and the clients of every older file have moved on. One greenlet
        per old file, only while it is retiring; none per client."""
        watch = fanout.watch
        last_change = last_reader = time.monotonic()
        while True:
            size = watch.size
            with gevent.Timeout(min(CHECK, self.grace), False):
                watch.wait_for_change(size)
            now = time.monotonic()
            if watch.size != size:
                last_change = now
                continue
            if now - last_change < self.grace:
                continue
            self.finished.add(fanout)
            readers = list(fanout.clients.values())
            for client in readers:
                if client.offset >= size:
                    fanout.end(client, Retired(f"file replaced at {watch.path}; "
                                               f"sent all {size} bytes of the old one"))
            if readers:
                last_reader = now
            elif now - last_reader >= KEEP and self.retiring[0] is fanout:
                break
        log.info("done with the old %s: its clients have it all (%d bytes)", watch.path, size)
        self._close(fanout)
        self.server.retired()

    def _close(self, fanout: Fanout) -> None:
        self.retiring.remove(fanout)
        self.finished.discard(fanout)
        fanout.close()
        fanout.watch.close()

"""Accepting connections without falling over when descriptors run out.

``accept()`` fails with EMFILE/ENFILE when the process or the system is out of
file descriptors. gevent's default answer prints a traceback for every failed
``accept`` and retries within milliseconds; the connection stays in the backlog
and the listener stays readable, so that turns into a busy loop of tracebacks.
`AcceptBackoff` instead logs once per episode, stops watching the listener for
a while (doubling the pause up to a limit), keeps serving the clients it has,
and says so when an ``accept`` succeeds again.
"""

from __future__ import annotations

import errno
import logging
import resource
from typing import Optional

import gevent

from .listeners import describe

log = logging.getLogger(__name__)

#: accept() errors that mean "out of descriptors or kernel memory": waiting is
#: the only cure, retrying at once only spins.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: accept() errors about one connection (reset before we took it, refused by a
#: firewall rule) or an interrupted call: skip it and accept the next.
TRANSIENT = frozenset({errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO,
                       errno.EPERM, errno.EINTR})


class AcceptBackoff:
    """Mixin for a `gevent.server.StreamServer`: ``accept`` errors are logged
    in one line and backed off from, never printed as tracebacks."""

    #: First pause, in seconds, after running out of descriptors: short, since
    #: a client disconnecting frees one at once.
    accept_backoff_min = 0.05

    #: Longest pause: the longest a new client may wait in the backlog once
    #: descriptors are free again.
    accept_backoff_max = 1.0

    _backoff: Optional[float] = None
    _resume: Optional[gevent.Greenlet] = None

    def do_read(self) -> Optional[tuple]:
        """Accept one connection; on failure log, maybe pause, and return None."""
        try:
            args = super().do_read()
        except OSError as error:
            self._accept_failed(error)
            return None
        if self._backoff is not None and args:
            log.warning("%s: accepting connections again", self.describe_listener())
            self._backoff = None
        return args

    def _accept_failed(self, error: OSError) -> None:
        if error.errno in TRANSIENT:
            log.debug("accept: %s", error)
            return
        if self._backoff is None:
            what = ("out of file descriptors" if error.errno in EXHAUSTED
                    else "accept failed")
            log.error("%s: %s (%s); pausing new connections, serving the current ones",
                      self.describe_listener(), what, error.strerror or error)
            self._backoff = self.accept_backoff_min
        else:
            self._backoff = min(self._backoff * 2, self.accept_backoff_max)
        self.stop_accepting()
        self._resume = gevent.spawn_later(self._backoff, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if self.started:
            self.start_accepting()

    def close(self) -> None:
        if self._resume is not None:
            self._resume.kill(block=False)
            self._resume = None
        super().close()

    def describe_listener(self) -> str:
        """The listener, as logs name it."""
        return describe(self.socket)


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the new
    soft limit. Each client is one descriptor, and the soft limit (often 1024)
    is far below what a server of thousands of clients needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, hard, error)
            return soft
        log.info("open files limit raised from %d to %d", soft, hard)
    return hard

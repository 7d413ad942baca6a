"""Batched sends: the same bytes to many sockets in one system call (io_uring).

The caught-up pass writes one small append to every parked client, a
``write`` each. On a virtual machine a system call's entry and exit are a good
part of such a ``write`` (the rest is TCP's work and the receiver's wake), so
with io_uring the pass queues one send per socket and submits them all with one
``io_uring_enter``, as the io_uring Rust tailsrv does. Each send has
``MSG_DONTWAIT``: a full socket answers ``EAGAIN`` at once, as a non-blocking
``write`` would, nothing is left in flight in the kernel after the call, and
every send's result is read back (a completion each), so a short send is seen
as a short ``write`` is. The kernel runs the sends in the submitting call, one
after the other: the wire is the same as with the loop of writes.

The binding is `liburing` (PyPI: the C liburing with a thin wrapper). There is
no io_uring where the binding is missing, the kernel has none or refuses it
(``kernel.io_uring_disabled``, a seccomp filter): `open_sender` then says None,
and the pass stays a loop of writes. ``TAILSRV_URING=0`` in the environment
turns it off too (to compare, or to test the loop).
"""

from __future__ import annotations

import os
import socket
from typing import List, Optional, Sequence, Tuple, Union

#: Fewest clients a pass must write to for a batch to gain. Measured by
#: ``scripts/batchsend`` (64-byte sends over loopback TCP, the loop of writes
#: and this batch taking turns; the sender's CPU time per client, batch /
#: loop): 1 client 1.43, 4 clients 1.21, 8 clients 1.09 (the binding's Python
#: calls per send, and reading each completion back, cost more than the
#: system calls saved), 16 clients 0.99 and 1.02, 24 to 64 clients 0.91 to
#: 0.93, 100 clients 0.80, 1,000 clients 0.86.
MIN_BATCH = 24

#: Submission queue entries: a pass to more clients is submitted this many at a
#: time (a system call per thousand clients, a ring of about 100 KiB).
ENTRIES = 1024

#: ``MSG_DONTWAIT``: never wait for room, like a non-blocking ``write``;
#: ``MSG_NOSIGNAL``: a gone peer is ``EPIPE``, never ``SIGPIPE``.
FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL

#: What a send that did not send everything gave: its index among the
#: descriptors, and the bytes it sent or the error it met.
Missed = List[Tuple[int, Union[int, OSError]]]

try:
    import liburing
except ImportError:  # pragma: no cover - the binding is a dependency
    liburing = None


class Sender:
    """An io_uring for sending one buffer to many sockets (`send`). Raises
    OSError when the kernel has no io_uring or refuses it."""

    def __init__(self, entries: int = ENTRIES) -> None:
        self._ring = liburing.Ring()
        # SUBMIT_ALL: a send that fails at submission does not stop the ones
        # after it (they would stay queued, pointing at the caller's buffer).
        liburing.io_uring_queue_init(entries, self._ring,
                                     liburing.IORING_SETUP_SUBMIT_ALL)
        self._cqe = liburing.Cqe()
        self._entries = entries

    def send(self, fds: Sequence[int], data: bytes) -> Missed:
        """Send ``data`` to every socket of ``fds`` (non-blocking); say which
        did not take all of it, with what they took or the error they met
        (``BlockingIOError``: full)."""
        ring = self._ring
        cqe = self._cqe
        get_sqe = liburing.io_uring_get_sqe
        prep_send = liburing.io_uring_prep_send
        whole = len(data)
        missed: Missed = []
        for first in range(0, len(fds), self._entries):
            for index in range(first, min(first + self._entries, len(fds))):
                sqe = get_sqe(ring)
                prep_send(sqe, fds[index], data, FLAGS)
                sqe.user_data = index
            submitted = liburing.io_uring_submit(ring)
            if liburing.io_uring_cq_ready(ring) < submitted:
                # Not seen here: every send is non-blocking, and ends in the
                # submitting call. Waited for all the same: ``data`` must not
                # be in use by the kernel once this returns.
                liburing.io_uring_wait_cqe_nr(ring, cqe, submitted)
            seen = 0
            for _ in liburing.CqeIter(ring, cqe):
                entry = cqe[0]
                seen += 1
                index = entry.user_data
                try:
                    sent = entry.res
                except OSError as error:
                    missed.append((index, error))
                else:
                    if sent != whole:
                        missed.append((index, sent))
            liburing.io_uring_cq_advance(ring, seen)
        return missed

    def close(self) -> None:
        """Release the ring."""
        liburing.io_uring_queue_exit(self._ring)


def open_sender() -> Optional[Sender]:
    """A `Sender`, or None where io_uring cannot be had (no binding, a kernel
    without it or refusing it, ``TAILSRV_URING=0``)."""
    if liburing is None or os.environ.get("TAILSRV_URING") == "0":
        return None
    try:
        return Sender()
    except OSError:
        return None

"""Batched sends (tailsrv/server/uring.py): the io_uring batch itself on real
sockets, and the server's caught-up pass with it and without it
(``TAILSRV_URING=0``): every client gets every byte, in order, also one whose
socket is full."""

from __future__ import annotations

import errno
import os
import socket
from contextlib import ExitStack

import pytest

from conftest import append, connect, read_exactly, wait_for
from tailsrv.server import uring

CONTENT = b"hello\nworld\n"
#: More clients than the batch needs, so that the server's pass batches.
CLIENTS = uring.MIN_BATCH + 8



def have_io_uring() -> bool:
    sender = uring.open_sender()
    if sender is not None:
        sender.close()
    return sender is not None


pytestmark = pytest.mark.skipif(not have_io_uring() and not os.environ.get("CI"),
                                reason="no io_uring here (under CI=true this must run)")


def pair(stack: ExitStack) -> tuple:
    """A connected loopback TCP pair: (the sending end, non-blocking; the reader)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        reader = stack.enter_context(socket.create_connection(listener.getsockname(),
                                                              timeout=10))
        sender = stack.enter_context(listener.accept()[0])
    sender.setblocking(False)
    return sender, reader


def test_one_submission_reaches_every_socket_and_says_which_fell_short():
    sender = uring.Sender(entries=16)  # fewer than the sockets: several submissions
    try:
        with ExitStack() as stack:
            pairs = [pair(stack) for _ in range(40)]
            data = os.urandom(1000)
            fds = [s.fileno() for s, _ in pairs]
            assert sender.send(fds, data) == []
            for _, reader in pairs:
                assert read_exactly(reader, len(data)) == data

            # A reader that never reads: its socket fills; the batch says how
            # much went (a short send), then that nothing did (EAGAIN).
            full, stalled = pairs[0]
            full.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            big = os.urandom(64 * 1024)
            went, outcomes = [], []  # what each send took; the short ones' counts
            for _ in range(1000):
                missed = sender.send([full.fileno()], big)
                if not missed:
                    went.append(big)
                    continue
                outcomes.append(missed[0][1])
                if isinstance(missed[0][1], OSError):
                    break
                went.append(big[:missed[0][1]])
            assert isinstance(outcomes[-1], BlockingIOError)
            assert all(isinstance(n, int) and 0 < n < len(big) for n in outcomes[:-1])
            expected = b"".join(went)
            stalled.settimeout(10)
            assert read_exactly(stalled, len(expected)) == expected

            # A gone peer: the send's error, for that socket only.
            gone, reader = pairs[1]
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            reader.close()  # a reset
            sends = 0

            def reset_seen() -> bool:
                nonlocal sends
                sends += 1
                return bool(missed.extend(sender.send(fds[1:3], data)) or missed)

            missed: list = []
            wait_for(reset_seen)  # the first send may go before the reset is seen
            assert [index for index, _ in missed] == [0]
            assert missed[0][1].errno in (errno.ECONNRESET, errno.EPIPE)
            assert read_exactly(pairs[2][1], sends * len(data)) == data * sends
    finally:
        sender.close()


def io_urings(server) -> int:
    return sum(d.target == "anon_inode:[io_uring]" for d in server.descriptors().values())


@pytest.mark.parametrize("batched", [True, False], ids=["io_uring", "TAILSRV_URING=0"])
def test_caught_up_clients_get_every_append_in_order(logfile, start_server, batched):
    """Many caught-up clients, one of which stops reading (its socket fills:
    it leaves the batch for the blocked clients' way, by ``sendfile``), and
    appends of every size up to the copy's: all get every byte, in order;
    then one resets, and ends, while the others go on."""
    env = dict(os.environ, TAILSRV_URING="1" if batched else "0")
    server = start_server(logfile, env=env)
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(server.port, b"0\n")) for _ in range(CLIENTS)]
        stalled = clients[0]
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for sock in clients:
            assert read_exactly(sock, len(CONTENT)) == CONTENT
        records = [b"%06d %s\n" % (i, b"x" * (i * 37 % 1000)) for i in range(400)]
        with open(logfile, "ab") as f:
            for record in records:
                f.write(record)
                f.flush()
                for sock in clients[1:]:
                    assert read_exactly(sock, len(record)) == record
        appended = b"".join(records)
        assert read_exactly(stalled, len(appended)) == appended
        assert io_urings(server) == (1 if batched else 0)

        # A client that resets: its send in the pass fails, it ends (logged),
        # and the pass goes on to the others.
        gone = clients.pop(1)
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        gone.close()
        for i in range(3):  # the first append may reach it before the reset does
            append(logfile, b"after %d\n" % i)
            for sock in clients:
                assert read_exactly(sock, 8) == b"after %d\n" % i
        server.wait_log("disconnected (")
    assert "Traceback" not in server.log

"""TailServer embedded with several listeners: one file, one watcher, one pool."""

from __future__ import annotations

import socket

from conftest import IO_TIMEOUT, append, connect, read_exactly, read_until_closed
from test_server import ServerThread

from tailsrv.server.listeners import unix_listener


def test_list_of_listeners(tmp_path, logfile):
    sock_path = str(tmp_path / "s.sock")
    thread = ServerThread(logfile, max_clients=2)
    thread.args = ([thread.listener, unix_listener(sock_path)], str(logfile))
    thread.start()
    assert thread.started.wait(10)
    server = thread.server
    assert len(server.siblings) == 1
    with connect(thread.port) as tcp, socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(IO_TIMEOUT)
        unix.connect(sock_path)
        unix.sendall(b"-6\n")
        assert read_exactly(tcp, 12) == b"hello\nworld\n"
        assert read_exactly(unix, 6) == b"world\n"
        with connect(thread.port) as third:  # max_clients counts both listeners
            assert read_until_closed(third) == b""
        append(logfile, b"!\n")
        assert read_exactly(tcp, 2) == read_exactly(unix, 2) == b"!\n"
        assert server.rejected["max_clients"] == 1 and server.accepted == 3
        thread.stop()
        assert read_until_closed(tcp) == read_until_closed(unix) == b""
    assert server.closed and all(s.closed for s in server.siblings)


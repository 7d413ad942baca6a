"""TailServer as a library: embedded in a gevent program, started and stopped
through its API (here in a thread with its own gevent hub, so that the test can
use plain blocking sockets)."""

from __future__ import annotations

import os
import threading

import gevent
from conftest import connect, read_exactly, read_until_closed

from tailsrv import TailServer, tcp_listener


class ServerThread(threading.Thread):
    def __init__(self, path, **kwargs):
        super().__init__(daemon=True)
        self.listener = tcp_listener(0, "127.0.0.1")
        self.port = self.listener.getsockname()[1]
        self.args = (self.listener, str(path))
        self.kwargs = kwargs
        self.server = self.hub = None
        self.started = threading.Event()

    def run(self):
        # A gevent server belongs to the hub of the thread that makes it.
        self.hub = gevent.get_hub()
        self.server = TailServer(*self.args, **self.kwargs)
        self.made(self.server)
        self.server.start()
        self.started.set()
        self.server.serve_forever()

    def made(self, server: TailServer) -> None:
        """Called in the server's thread before it starts: for more to attach."""

    def stop(self):
        self.hub.loop.run_callback_threadsafe(gevent.spawn, self.server.stop, 1)
        self.join(10)
        assert not self.is_alive()


def test_embedded_start_serve_stop(logfile):
    thread = ServerThread(logfile, header_timeout=5)
    thread.start()
    assert thread.started.wait(10)
    with connect(thread.port) as sock:
        assert read_exactly(sock, 12) == b"hello\nworld\n"
        thread.stop()
        assert read_until_closed(sock) == b""
    assert thread.server.closed
    assert thread.server.watch.fd is None


def test_two_servers_one_thread_two_files(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"AAA")
    b.write_bytes(b"BBB")
    listeners = [tcp_listener(0, "127.0.0.1") for _ in range(2)]
    ports = [l.getsockname()[1] for l in listeners]
    ready = threading.Event()
    hub, servers = [], []

    def run():
        hub.append(gevent.get_hub())
        servers.extend(TailServer(l, str(p)) for l, p in zip(listeners, (a, b)))
        for server in servers:
            server.start()
        ready.set()
        gevent.joinall([gevent.spawn(s.serve_forever) for s in servers])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    with connect(ports[0]) as sa, connect(ports[1]) as sb:
        assert read_exactly(sa, 3) == b"AAA"
        assert read_exactly(sb, 3) == b"BBB"
    for server in servers:
        hub[0].loop.run_callback_threadsafe(gevent.spawn, server.stop)
    thread.join(10)
    assert not thread.is_alive()


def test_client_sockets_get_nodelay_and_keepalive(logfile):
    """A vanished peer is probed after a minute idle, not the kernel's two
    hours. The options are set once, on the listener: the accepted sockets
    inherit them (checked here on the server's own end of a connection)."""
    import socket

    from tailsrv.server.tailserver import tune
    thread = ServerThread(logfile)
    thread.start()
    assert thread.started.wait(10)
    with connect(thread.port) as sock:
        assert read_exactly(sock, 12) == b"hello\nworld\n"
        [fd] = list(thread.server.fanout.clients)
        with socket.socket(fileno=os.dup(fd)) as accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 6
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 65536
    thread.stop()
    with socket.socket(socket.AF_UNIX) as unix:
        tune(unix)  # nothing to tune, and no error

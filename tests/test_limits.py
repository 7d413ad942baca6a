"""Limits end to end: --max-clients, and running out of file descriptors."""

import socket
import struct

from conftest import append, connect, read_exactly, read_until_closed, wait_for


def reset(sock: socket.socket) -> None:
    """Close with a reset, so the server notices at once (a plain close looks
    like a half-closed client, which the protocol keeps serving)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def admitted(port: int, header: bytes, expected: bytes) -> socket.socket:
    """A client that got ``expected``: retried while the server still counts a
    connection that just ended (its handler finishes one loop turn later)."""
    def attempt():
        sock = connect(port, header)
        try:
            if read_exactly(sock, len(expected)) == expected:
                return sock
        except (EOFError, ConnectionResetError):
            pass
        sock.close()
        return None
    return wait_for(attempt)


def test_max_clients(logfile, start_server):
    server = start_server(logfile, "--max-clients", "2")
    first = admitted(server.port, b"0\n", b"hello\nworld\n")
    second = admitted(server.port, b"0\n", b"hello\nworld\n")
    third = connect(server.port, header=None)
    assert read_until_closed(third) == b""  # closed at once, not left in the backlog
    server.wait_log("refused: already serving 2 clients (--max-clients)")
    append(logfile, b"on\n")
    for client in (first, second):
        assert read_exactly(client, 3) == b"on\n"
    reset(first)
    server.wait_log("disconnected (client gone")
    admitted(server.port, b"-3\n", b"on\n").close()  # a place is free again
    second.close()
    third.close()


def test_out_of_descriptors(logfile, start_server):
    """With few descriptors, extra clients wait in the backlog while the others
    are served; one log line, no traceback; service resumes when some close."""
    limit = 40
    server = start_server(logfile, prefix=["prlimit", f"--nofile={limit}:{limit}"])
    spare = limit - server.open_fds()
    clients = [connect(server.port) for _ in range(spare + 5)]
    server.wait_log("out of file descriptors")
    served = clients[:spare - 1]
    for client in served:
        assert read_exactly(client, 12) == b"hello\nworld\n"
    append(logfile, b"still\n")
    for client in served:
        assert read_exactly(client, 6) == b"still\n"
    for client in served[:10]:
        reset(client)
    server.wait_log("accepting connections again")
    for client in clients[spare - 1:]:
        assert read_exactly(client, 18) == b"hello\nworld\nstill\n"
    log = server.log
    assert log.count("out of file descriptors") == 1
    assert "Traceback" not in log
    for client in clients[10:]:
        client.close()
    assert server.terminate() == 0


def test_soft_open_files_limit_raised_to_hard(logfile, start_server):
    server = start_server(logfile, prefix=["prlimit", "--nofile=64:4096"])
    with open(f"/proc/{server.proc.pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    assert line.split()[3:5] == ["4096", "4096"]

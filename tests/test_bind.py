"""--bind end to end: several listeners (IPv4, IPv6, unix) on one file."""

import socket
import subprocess

import pytest

from conftest import IO_TIMEOUT, append, connect, read_exactly, script, wait_for


def unix_client(path, header=b"0\n") -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(IO_TIMEOUT)
    sock.connect(str(path))
    sock.sendall(header)
    return sock


def test_several_listeners_share_one_file(tmp_path, logfile, start_server):
    sock_path = tmp_path / "tailsrv.sock"
    server = start_server(logfile, "--bind", "127.0.0.1", "--bind", "::1",
                          "--bind", f"unix:{sock_path}")
    clients = [connect(server.port), connect(server.port, host="::1"), unix_client(sock_path)]
    for client in clients:
        assert read_exactly(client, 12) == b"hello\nworld\n"
    append(logfile, b"more\n")
    for client in clients:
        assert read_exactly(client, 5) == b"more\n"
        client.close()
    targets = [d.target for d in server.descriptors().values()]
    assert targets.count(str(logfile)) == 1  # one descriptor for every listener
    log = server.wait_log("unix-client connected: header 0")
    assert f"listening on 127.0.0.1:{server.port}, [::1]:{server.port}, unix:{sock_path}" in log
    assert server.terminate() == 0
    assert not sock_path.exists()  # removed at exit


def test_bind_restricts_the_interfaces(logfile, start_server):
    server = start_server(logfile, "--bind", "127.0.0.1")
    try:
        socket.create_connection(("::1", server.port), timeout=IO_TIMEOUT).close()
    except OSError:
        pass
    else:
        raise AssertionError("::1 accepted a connection; only 127.0.0.1 was asked for")


def test_unix_only_needs_no_port(tmp_path, logfile):
    sock_path = tmp_path / "only.sock"
    proc = subprocess.Popen([script("tailsrv"), "--bind", f"unix:{sock_path}", str(logfile)],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The socket file appears at bind(), a moment before listen(): until
        # then a connect is refused. Wait until the server takes connections.
        wait_for(lambda: _accepts(sock_path))
        with unix_client(sock_path, b"-6\n") as client:
            assert read_exactly(client, 6) == b"world\n"
        proc.terminate()
        _, err = proc.communicate(timeout=IO_TIMEOUT)
        assert proc.returncode == 0, err
        assert not sock_path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(IO_TIMEOUT)


def _accepts(path) -> bool:
    try:
        unix_client(path, b"").close()
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    return True


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([script("tailsrv"), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=IO_TIMEOUT)


def test_a_path_that_is_not_a_socket_is_left_alone(tmp_path, logfile):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result = run("--bind", f"unix:{precious}", str(logfile))
    assert result.returncode == 1
    assert "is not a socket; not replacing it" in result.stderr
    assert "Traceback" not in result.stderr
    assert precious.read_text() == "keep me"


def test_tcp_bind_without_port_is_a_usage_error(logfile):
    for args in (["--bind", "127.0.0.1"], []):
        result = run(*args, str(logfile))
        assert result.returncode == 2
        assert "-p PORT is required" in result.stderr


def test_bad_bind_is_a_usage_error(logfile):
    result = run("-p", "1", "--bind", "localhost:80", str(logfile))
    assert result.returncode == 2
    assert "invalid --bind 'localhost:80': not an IP address" in result.stderr


@pytest.mark.timeout(30)
def test_tscat_over_a_unix_socket(tmp_path, logfile, start_server, spawn):
    sock_path = tmp_path / "tailsrv.sock"
    server = start_server(logfile, "--bind", "127.0.0.1", "--bind", f"unix:{sock_path}")
    tscat = spawn(["tscat", "--lines", "-1", "--no-reconnect", f"unix:{sock_path}"])
    server.wait_log("unix-client connected: header -1l")
    append(logfile, b"more\n")
    assert tscat.stdout.read(11) == b"world\nmore\n"
    assert server.terminate() == 0
    out, err = tscat.communicate(timeout=IO_TIMEOUT)
    assert (tscat.returncode, out, err) == (0, b"", b"")

"""Listening sockets: --bind parsing, unix sockets, inherited descriptors."""

import errno
import os
import socket
import stat

import pytest

from tailsrv.server.listeners import (Bind, describe, inherited_listener, parse_bind,
                                      parse_host_port, remove_socket_file, tcp_listener,
                                      unix_listener)


@pytest.mark.parametrize("text, bind", [
    ("127.0.0.1", Bind(host="127.0.0.1")),
    ("::1", Bind(host="::1")),
    ("[::1]", Bind(host="::1")),
    ("::", Bind(host="::")),
    ("0.0.0.0", Bind(host="0.0.0.0")),
    ("unix:/run/x.sock", Bind(unix="/run/x.sock")),
    ("unix:rel.sock", Bind(unix="rel.sock")),
    ("unix:@abstract", Bind(unix="@abstract")),
])
def test_parse_bind(text, bind):
    assert parse_bind(text) == bind


@pytest.mark.parametrize("text", ["", "localhost", "1.2.3", "unix:", "[::1", "127.0.0.1:80"])
def test_parse_bind_rejects(text):
    with pytest.raises(ValueError):
        parse_bind(text)


@pytest.mark.parametrize("text, address", [
    ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("[::1]:9100", ("::1", 9100)),
    (":9100", ("", 9100)),
])
def test_parse_host_port(text, address):
    assert parse_host_port(text) == address


@pytest.mark.parametrize("text", ["9100", "127.0.0.1", "127.0.0.1:0", "::1:9100",
                                  "host:9100", "127.0.0.1:99999", "[::1]:x"])
def test_parse_host_port_rejects(text):
    with pytest.raises(ValueError):
        parse_host_port(text)


def test_unix_listener_mode_and_cleanup(tmp_path):
    path = str(tmp_path / "s.sock")
    with unix_listener(path) as sock:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert describe(sock) == f"unix:{path}"
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    remove_socket_file(path)
    assert not os.path.exists(path)


def test_stale_socket_is_replaced_live_one_is_not(tmp_path):
    path = str(tmp_path / "s.sock")
    unix_listener(path).close()  # a crashed run: the file stays, nobody listens
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with unix_listener(path):
        with pytest.raises(OSError) as raised:
            unix_listener(path)
        assert raised.value.errno == errno.EADDRINUSE


def test_never_deletes_what_is_not_a_socket(tmp_path):
    path = tmp_path / "precious"
    path.write_text("keep me")
    with pytest.raises(OSError) as raised:
        unix_listener(str(path))
    assert raised.value.errno == errno.EEXIST
    remove_socket_file(str(path))
    assert path.read_text() == "keep me"


def test_abstract_unix_socket():
    name = f"@tailsrv-test-{os.getpid()}"
    with unix_listener(name) as sock:
        assert describe(sock) == f"unix:{name}"


def test_explicit_ipv6_is_ipv6_only():
    """So that '--bind :: --bind 0.0.0.0' can share a port."""
    for _ in range(20):  # the port free on ::1 may be another program's on 127.0.0.1
        with tcp_listener(0, "::1") as v6:
            assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
            port = v6.getsockname()[1]
            try:
                v4 = tcp_listener(port, "127.0.0.1")
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    continue
                raise
            with v4:
                assert describe(v4) == f"127.0.0.1:{port}"
            assert describe(v6) == f"[::1]:{port}"
            return
    raise AssertionError("no port free on both ::1 and 127.0.0.1 in 20 tries")


def test_inherited_listener():
    listening = tcp_listener(0, "127.0.0.1")
    sock = inherited_listener(os.dup(listening.fileno()))
    try:
        assert sock.getsockname() == listening.getsockname()
        assert not sock.get_inheritable() and not sock.getblocking()
    finally:
        sock.close()
        listening.close()


def test_inherited_listener_rejects_what_does_not_listen(tmp_path):
    with socket.socket() as unbound:
        fd = os.dup(unbound.fileno())
        with pytest.raises(OSError, match="not a listening stream socket"):
            inherited_listener(fd)
        os.close(fd)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="not a socket"):
            inherited_listener(fd)
    finally:
        os.close(fd)

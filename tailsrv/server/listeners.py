"""Listening sockets: what the server accepts connections on.

Three kinds, all ending up as a non-blocking listening socket:

- TCP (`tcp_listener`). Built by hand rather than with gevent's ``('', port)``
  shortcut, which fails on hosts without IPv6: the default is one dual-stack
  IPv6 socket that also takes IPv4 clients, falling back to IPv4 alone where
  the host has no IPv6. An explicit IPv6 address listens on IPv6 only, so that
  ``--bind :: --bind 0.0.0.0`` works whatever the host's ``bindv6only``.
- Unix stream sockets (`unix_listener`): mode 0660, a stale socket file from a
  crashed run replaced, anything else at that path left alone.
- Sockets inherited from systemd (`inherited_listener`).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from typing import NamedTuple, Optional, Tuple

#: Pending connections the kernel may queue. The original's 128 drops SYNs when
#: a thousand clients connect at once; the kernel caps this at somaxconn anyway.
BACKLOG = 4096

#: Permissions of a unix socket file: the owner and its group may connect
#: (connecting needs write permission), others may not.
UNIX_MODE = 0o660

#: Errors that mean "this host has no IPv6", as opposed to a real failure.
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)

_UNIX_PREFIX = "unix:"


class Bind(NamedTuple):
    """One ``--bind`` address: a TCP host (a literal IP address, ``""`` for
    every interface) or, when ``unix`` is set, the path of a unix socket."""

    host: str = ""
    unix: Optional[str] = None

    def __str__(self) -> str:
        return f"{_UNIX_PREFIX}{self.unix}" if self.unix is not None else self.host


def parse_bind(text: str) -> Bind:
    """``127.0.0.1``, ``::1``, ``[::1]`` or ``unix:/path``; ValueError otherwise."""
    if text.startswith(_UNIX_PREFIX):
        path = text[len(_UNIX_PREFIX):]
        if not path:
            raise ValueError(f"no path after {_UNIX_PREFIX!r}")
        return Bind(unix=path)
    return Bind(host=_ip(text))


def parse_host_port(text: str) -> Tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (every interface); ValueError otherwise."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected ADDRESS:PORT, e.g. 127.0.0.1:9100 or [::1]:9100")
    if ":" in host and not host.startswith("["):
        raise ValueError("write an IPv6 address in brackets: [::1]:9100")
    return (_ip(host) if host else ""), int(port)


def _ip(text: str) -> str:
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def open_listener(bind: Bind, port: Optional[int]) -> socket.socket:
    """The listening socket for one ``--bind`` address (TCP ones on ``port``)."""
    if bind.unix is not None:
        return unix_listener(bind.unix)
    if port is None:
        raise ValueError(f"{bind}: a TCP address needs a port")
    return tcp_listener(port, bind.host)


def tcp_listener(port: int, host: str = "") -> socket.socket:
    """A non-blocking listening TCP socket on ``host`` (all interfaces when empty)."""
    if host:
        if ":" in host:
            return _listen(socket.AF_INET6, (host, port), v6only=True)
        return _listen(socket.AF_INET, (host, port))
    try:
        return _listen(socket.AF_INET6, ("::", port), v6only=False)
    except OSError as error:
        if error.errno not in _NO_IPV6:
            raise
    return _listen(socket.AF_INET, ("0.0.0.0", port))


def unix_listener(path: str) -> socket.socket:
    """A non-blocking listening unix stream socket at ``path``, mode 0660.

    A socket file nobody listens on (left by a crashed run) is replaced; a live
    one raises EADDRINUSE; anything that is not a socket raises EEXIST and is
    never deleted. ``@name`` is a Linux abstract socket: no file at all.
    """
    if path.startswith("@"):
        return _listen(socket.AF_UNIX, "\0" + path[1:])
    _remove_stale_socket(path)
    return _listen(socket.AF_UNIX, path, mode=UNIX_MODE)


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # stale: nobody accepts on it any more
            return
        except OSError:
            return  # not ours to judge (e.g. permission): let bind report it
    raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")


def remove_socket_file(path: str) -> None:
    """Remove the unix socket file ``unix_listener`` made, if it is still a socket."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def inherited_listener(fd: int) -> socket.socket:
    """Wrap a listening socket passed by a supervisor (systemd) as ``fd``.

    Raises OSError when ``fd`` is not a listening stream socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as error:
        raise OSError(error.errno, f"fd {fd} is not a socket") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise OSError(errno.EINVAL, f"fd {fd} is not a listening stream socket")
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def describe(sock: socket.socket) -> str:
    """Where a listener listens, for logs: ``[::]:4321``, ``127.0.0.1:4321``,
    ``unix:/run/tailsrv.sock``."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):  # abstract
            name = "@" + name[1:].decode(errors="replace")
        return f"{_UNIX_PREFIX}{name}"
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen(family: int, address, v6only: Optional[bool] = None,
            mode: Optional[int] = None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        sock.bind(address)
        if mode is not None:  # before listen(): nobody can connect until then
            os.chmod(address, mode)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock

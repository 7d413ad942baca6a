"""Listening sockets: what the server accepts connections on.

Built by hand rather than with gevent's ``('', port)`` shortcut, which fails on
hosts without IPv6: the default is one dual-stack IPv6 socket that also takes
IPv4 clients, falling back to IPv4 alone where the host has no IPv6.
"""

from __future__ import annotations

import errno
import socket

#: Pending connections the kernel may queue. The original's 128 drops SYNs when
#: a thousand clients connect at once; the kernel caps this at somaxconn anyway.
BACKLOG = 4096

#: Errors that mean "this host has no IPv6", as opposed to a real failure.
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


def tcp_listener(port: int, host: str = "") -> socket.socket:
    """A non-blocking listening TCP socket on ``host`` (all interfaces when empty)."""
    if host:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return _listen(family, host, port)
    try:
        return _listen(socket.AF_INET6, "::", port, dual_stack=True)
    except OSError as error:
        if error.errno not in _NO_IPV6:
            raise
    return _listen(socket.AF_INET, "0.0.0.0", port)


def _listen(family: int, host: str, port: int, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock

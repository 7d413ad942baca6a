"""TCP keepalive, as both ends of a tailsrv stream set it.

A stream may carry nothing for hours while the file is idle, so neither end can
tell a quiet peer from one that vanished without closing (a crashed machine, a
cut cable, a client whose half of the connection expired). Keepalive probes
tell, about two minutes after the last traffic instead of the kernel's default
two hours: the client then reconnects, the server frees the descriptor.
"""

from __future__ import annotations

import socket

#: Seconds without traffic before the first probe.
KEEPALIVE_IDLE = 60
#: Seconds between unanswered probes.
KEEPALIVE_INTERVAL = 10
#: Unanswered probes after which the connection is dead.
KEEPALIVE_COUNT = 6


def enable_keepalive(sock: socket.socket) -> None:
    """Turn keepalive on for a TCP socket, with the timings above where the
    platform lets us set them (Linux and most BSDs; elsewhere its defaults)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE),
                        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                        ("TCP_KEEPCNT", KEEPALIVE_COUNT)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)

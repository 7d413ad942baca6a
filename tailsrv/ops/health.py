"""A container's health check: is the server in this container still serving?

``python -m tailsrv.ops.health`` (the image's ``HEALTHCHECK``) finds the TCP
sockets on which PID 1, the container's tailsrv, is listening, from /proc, so it
needs no copy of the command line's port. On each it asks for the file's end with
an announcement (``-0?``) and waits for an answer: the kernel completes a
connection in its backlog even when the server is hung, so a connection alone
proves nothing, but an answer (the position line, or, on a server that turns the
header away, its close) comes from the server's own loop. Exit status 0 when every
listener answered within `TIMEOUT`, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import List, Optional, Tuple

#: Seconds a listener has to answer; Docker's own default timeout is 30 s, and
#: a healthy tailsrv answers in well under a millisecond.
TIMEOUT = 5.0

#: The header sent: start at the end, and announce the start. Asks the server
#: for one line, and no file data.
PROBE = b"-0?\n"

#: /proc/net/tcp's state for a listening socket.
LISTEN = "0A"


def listening_sockets(pid: int = 1) -> List[Tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on; a wildcard
    address is given as loopback, where a probe from inside can reach it."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            link = os.readlink(f"{fd_dir}/{name}")
        except OSError:  # closed since the listing
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/net/{table}") as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[3] == LISTEN and fields[9] in inodes:
                        found.append(_address(fields[1], family))
        except FileNotFoundError:  # a kernel without IPv6
            continue
    return found


def _address(field: str, family: int) -> Tuple[str, int]:
    """/proc/net/tcp's ``HEXADDR:HEXPORT`` (the address in host byte order,
    by 32-bit words) as text; a wildcard as loopback."""
    hex_address, hex_port = field.split(":")
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if not any(raw):
        return ("127.0.0.1" if family == socket.AF_INET else "::1"), int(hex_port, 16)
    return socket.inet_ntop(family, raw), int(hex_port, 16)


def probe(address: Tuple[str, int], timeout: float = TIMEOUT) -> Optional[str]:
    """None when the server at `address` answers the probe in time, else why not."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(PROBE)
            sock.recv(64)  # the position line, or b"" from a server that refused it
    except OSError as error:
        return f"{address[0]} port {address[1]}: {error.strerror or error}"
    return None


def main() -> int:
    try:
        listeners = listening_sockets()
    except OSError as error:
        print(f"unhealthy: cannot read the server's sockets: {error}", file=sys.stderr)
        return 1
    if not listeners:
        print("unhealthy: the server listens on no TCP port", file=sys.stderr)
        return 1
    for address in listeners:
        why = probe(address)
        if why is not None:
            print(f"unhealthy: {why}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

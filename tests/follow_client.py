#!/usr/bin/env python3
"""A library client for tests/test_rotation.py, run as a process of its own.

Usage: follow_client.py ADDR HOW OUT

Follows the server at ADDR with `tailsrv.client` (HOW is ``bytes``: `follow`
from byte 0; a number: `follow_lines` from that line, e.g. ``-3``) and appends
what it gets to OUT. Each `Replaced` notice appends a line to OUT.notices: the
length of OUT at that moment and the notice's position.
"""

import sys

from tailsrv.client import follow, follow_lines


def main(address: str, how: str, out: str) -> None:
    with open(out, "ab", buffering=0) as data, open(out + ".notices", "a") as notices:
        def replaced(notice) -> None:
            notices.write(f"{data.tell()} {notice.position}\n")
            notices.flush()

        if how == "bytes":
            chunks = follow(address, on_replaced=replaced)
        else:
            chunks = follow_lines(address, lines=int(how), on_replaced=replaced)
        for chunk in chunks:
            data.write(chunk)


if __name__ == "__main__":
    main(*sys.argv[1:])

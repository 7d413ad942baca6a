"""Line positions (the ``l`` header extension): where the Nth line starts.

Finding a line needs the file's bytes, so these functions take a ``read(offset,
length)`` callable rather than a file, and a ``pause()`` callable that they call
between blocks: the server passes ``gevent.sleep(0)`` so that scanning a large
file never stalls the other clients, and tests pass plain functions. A negative
count scans backwards from the end, reading only as much as it needs.

Each block's newlines are counted in C (``bytes.count``); only the block holding
the line asked for is searched newline by newline, so a scan costs about as
much as reading the bytes, however short the lines.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

Read = Callable[[int, int], bytes]
Pause = Callable[[], None]

#: Bytes read per step. Large enough that a syscall is cheap next to the scan,
#: small enough that one step is a short slice of the event loop.
BLOCK = 256 * 1024


def start_of_last_lines(read: Read, size: int, count: int, pause: Pause) -> int:
    """The position where the last ``count`` lines of a ``size``-byte file start.

    As ``tail -n``: a final line without a newline counts as a line; a file with
    fewer lines than asked starts at 0.
    """
    if size == 0:
        return 0
    end = size
    if read(size - 1, 1) == b"\n":
        end -= 1  # the final newline ends the last line; it does not start one
    while end > 0:
        begin = max(0, end - BLOCK)
        block = read(begin, end - begin)
        newlines = block.count(b"\n")
        if newlines >= count:
            index = len(block)
            for _ in range(count):
                index = block.rfind(b"\n", 0, index)
            return begin + index + 1
        count -= newlines
        end = begin
        pause()
    return 0


def end_of_first_lines(
    read: Read, start: int, size: int, count: int, pause: Pause
) -> Tuple[Optional[int], int]:
    """Scan ``[start, size)`` for ``count`` more newlines.

    Returns ``(position, 0)`` where position is just after the last newline
    needed, or ``(None, remaining)`` when the file ends first: call again from
    ``size`` once it has grown, with the remaining count.
    """
    position = start
    while count > 0 and position < size:
        block = read(position, min(BLOCK, size - position))
        if not block:
            break
        newlines = block.count(b"\n")
        if newlines >= count:
            index = -1
            for _ in range(count):
                index = block.find(b"\n", index + 1)
            return position + index + 1, 0
        count -= newlines
        position += len(block)
        pause()
    return (position, 0) if count == 0 else (None, count)

"""Reading a file that tspub put into a JetStream stream (``tscat nats://...``,
``tssync nats://...``).

nats-py does the talking. This module chooses where to start: the latest file's
first message, the message holding a byte offset, the last lines, or the place a
mirror stopped, found by asking the stream for single messages (a binary search
over the stream's sequence numbers, on the position each message carries). It
then follows with an ordered consumer from there, and `replay.Replay` turns the
messages into the file's bytes. asyncio, run by the script's own process: the
tailsrv server never imports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import AsyncIterator, Awaitable, Callable, NamedTuple, Optional, Tuple

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ..lines import start_of_last_lines
from .publisher import describe
from .replay import Part, Replay, parse_stream_address, part

log = logging.getLogger(__name__)

#: Seconds a connection or a request to JetStream may take before the reader
#: says it cannot reach it.
REQUEST_TIMEOUT = 5.0

#: Files (generations) before the latest in which a resuming mirror looks for
#: the one it was copying: a mirror stopped for longer than that many rotations
#: starts over with the latest file.
GENERATIONS_BACK = 8

#: Bytes of a mirror's end compared with the stream to know that the mirror
#: holds the same file (as tailsrv's resume proof does, with fewer bytes: the
#: offsets already match).
PROOF_BYTES = 64

#: Seconds between the server's heartbeats to the ordered consumer: a consumer
#: that misses them (the server restarted) is made again at once, rather than
#: after nats-py's default of some 20 s of silence.
HEARTBEAT = 2.0

#: Where a key (generation, offset) sorts after every offset of its generation.
END = 1 << 62


class StreamError(OSError):
    """The stream cannot be read: said in one line, status 1."""


class Start(NamedTuple):
    """Where reading begins: the stream's sequence number, and the place in
    the file (generation, byte) from which bytes are wanted."""

    sequence: int
    generation: int
    position: int


class Stream:
    """One subject of one JetStream stream, read a message at a time."""

    def __init__(self, js, name: str, subject: str) -> None:
        self.js, self.name, self.subject = js, name, subject

    async def at(self, sequence: int) -> Optional[Tuple[int, Part]]:
        """The subject's first message at or after ``sequence``, with its own."""
        try:
            message = await self.js.get_msg(self.name, sequence, subject=self.subject, next=True)
        except NotFoundError:
            return None
        return message.seq, part(message.headers, message.data or b"", message.seq)

    async def last(self) -> Optional[Tuple[int, Part]]:
        try:
            message = await self.js.get_last_msg(self.name, self.subject)
        except NotFoundError:
            return None
        return message.seq, part(message.headers, message.data or b"", message.seq)

    async def floor(self, key: Tuple[int, int], high: int) -> Optional[Tuple[int, Part]]:
        """The last message up to sequence ``high`` whose (generation, offset)
        is at most ``key``: a binary search, as positions grow along the stream."""
        info = await self.js.stream_info(self.name)
        low, best = info.state.first_seq, None
        while low <= high:
            middle = (low + high) // 2
            found = await self.at(middle)
            if found is None or found[0] > high or (found[1].generation, found[1].offset) > key:
                high = middle - 1
            else:
                best, low = found, found[0] + 1
        return best

    async def first_of(self, generation: int, high: int) -> int:
        """The sequence number of the first message of file ``generation``."""
        before = await self.floor((generation - 1, END), high)
        start = await self.at(before[0] + 1 if before else 0)
        return start[0] if start else high

    async def back(self, sequence: int) -> Optional[Tuple[int, Part]]:
        """The subject's message just before ``sequence``."""
        while sequence > 1:
            sequence -= 1
            try:
                message = await self.js.get_msg(self.name, sequence)
            except NotFoundError:
                return None
            if message.subject == self.subject:
                return message.seq, part(message.headers, message.data or b"", message.seq)
        return None


async def connect(server: str, subject: str):
    """A connection to ``server`` and the `Stream` holding ``subject``."""
    try:
        nc = await asyncio.wait_for(nats.connect(
            server, connect_timeout=REQUEST_TIMEOUT, max_reconnect_attempts=-1,
            allow_reconnect=True, error_cb=_ignore), REQUEST_TIMEOUT * 2)
    except (asyncio.TimeoutError, OSError, nats.errors.Error) as error:
        raise StreamError(f"{server}: cannot connect to NATS: {describe(error)}") from None
    js = nc.jetstream(timeout=REQUEST_TIMEOUT)
    try:
        name = await js.find_stream_name_by_subject(subject)
    except NotFoundError:
        await nc.close()
        raise StreamError(f"{server}: no JetStream stream holds the subject {subject}") \
            from None
    except (asyncio.TimeoutError, nats.errors.Error) as error:
        await nc.close()
        raise StreamError(f"{server}: JetStream does not answer: {describe(error)}") from None
    return nc, Stream(js, name, subject)


async def start_at_offset(stream: Stream, offset: int) -> Start:
    """Byte ``offset`` of the latest file (a negative one counts from its end,
    stopping at its start); the start of the subject when it has no message."""
    last = await stream.last()
    if last is None:
        return Start(0, -1, 0)
    sequence, final = last
    generation = final.generation
    if offset < 0:
        offset = max(0, final.offset + len(final.data) + offset)
    holding = await stream.floor((generation, offset), sequence)
    if holding is None or holding[1].generation != generation:
        return Start(await stream.first_of(generation, sequence), generation, offset)
    return Start(holding[0], generation, offset)


async def start_at_lines(stream: Stream, count: int) -> Start:
    """The last ``count`` lines of the latest file, as ``tail -n``."""
    last = await stream.last()
    if last is None:
        return Start(0, -1, 0)
    sequence, final = last
    parts = [final]
    newlines = final.data.count(b"\n")
    while newlines <= count and parts[0].offset > 0:
        previous = await stream.back(sequence)
        if previous is None or previous[1].generation != final.generation:
            break
        sequence, earlier = previous
        parts.insert(0, earlier)
        newlines += earlier.data.count(b"\n")
    data = b"".join(message.data for message in parts)
    begin = start_of_last_lines(lambda at, size: data[at:at + size], len(data), count,
                                lambda: None)
    return Start(sequence, final.generation, parts[0].offset + begin)


async def start_of_mirror(stream: Stream, size: int, tail: bytes) -> Optional[Start]:
    """Where a mirror of ``size`` bytes ending in ``tail`` goes on: in the file
    of the last `GENERATIONS_BACK` whose bytes before ``size`` are ``tail``'s;
    None when none is (the mirror holds another file)."""
    if size == 0:
        return await start_at_offset(stream, 0)
    last = await stream.last()
    if last is None:
        return None
    sequence, final = last
    for generation in range(final.generation, max(-1, final.generation - GENERATIONS_BACK), -1):
        holding = await stream.floor((generation, size - 1), sequence)
        if holding is None or holding[1].generation != generation:
            continue
        found, message = holding
        end = message.offset + len(message.data)
        if end < size:  # the stream's copy of that file is shorter than the mirror
            continue
        begin = max(message.offset, size - len(tail))
        if message.data[begin - message.offset:size - message.offset] == tail[begin - size:]:
            return Start(found, generation, size)
    return None


async def messages(stream: Stream, start: Start) -> AsyncIterator[Tuple[bool, bytes, bool]]:
    """From ``start`` on, as they come: (a new file begins, its bytes, whether
    more are waiting already), each byte once (`Replay`)."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=max(1, start.sequence))
    subscription = await stream.js.subscribe(stream.subject, ordered_consumer=True,
                                             config=config, idle_heartbeat=HEARTBEAT)
    replay = Replay(start.generation, start.position)
    try:
        async for message in subscription.messages:
            fresh = replay.generation < 0
            replaced, data = replay.feed(part(message.headers, message.data or b"",
                                              message.metadata.sequence.stream))
            yield replaced and not fresh, data, subscription.pending_msgs > 0
    finally:
        await subscription.unsubscribe()


def run(main: Callable[[], Awaitable[int]]) -> int:
    """Run the script's coroutine; SIGTERM ends it with status 0."""
    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await main()
        except asyncio.CancelledError:
            return 0
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
    return asyncio.run(guarded())


async def _ignore(error: BaseException) -> None:
    """nats-py's error callback: a lost connection is retried by nats-py, and
    a request made meanwhile fails with its own error."""


def cat(address: str, offset: int, lines: Optional[int], out) -> int:
    """tscat's loop over a stream: the latest file from ``offset`` (or its
    last ``-lines`` lines), then what is published, written to ``out``."""
    server, subject = parse_stream_address(address)

    async def main() -> int:
        nc, stream = await connect(server, subject)
        try:
            start = await (start_at_lines(stream, -lines) if lines is not None and lines < 0
                           else start_at_offset(stream, offset))
            async for replaced, data, more in messages(stream, start):
                if replaced:
                    out.flush()
                    log.warning("file replaced; following the new file (%s)", address)
                out.write(data)
                if not more:
                    out.flush()
        except BrokenPipeError:  # the reader went away, as `head` does
            return 0
        finally:
            await nc.close()
        return 0
    return run(main)


def sync(address: str, mirror) -> int:
    """tssync's loop over a stream: the mirror (a `tssync.Mirror`) carries on
    where it stopped, or, when it holds a file the stream no longer has, is
    rotated and the latest file mirrored from its start."""
    from .follower import Replaced
    from .tssync import write_all
    server, subject = parse_stream_address(address)

    async def main() -> int:
        nc, stream = await connect(server, subject)
        try:
            size = os.fstat(mirror.fd).st_size
            tail = os.pread(mirror.fd, min(size, PROOF_BYTES), size - min(size, PROOF_BYTES))
            start = await start_of_mirror(stream, size, tail)
            if start is None:
                log.warning("%s holds a file that %s no longer has", mirror.path, address)
                mirror.rotate(Replaced(address, size))
                start = await start_at_offset(stream, 0)
            elif size:
                log.info("resuming at byte %d of file %d of %s", size, start.generation,
                         address)
            async for replaced, data, _ in messages(stream, start):
                if replaced:
                    mirror.rotate(Replaced(address, os.fstat(mirror.fd).st_size))
                write_all(mirror.fd, data)
        finally:
            await nc.close()
        return 0
    return run(main)



"""Publishing a followed file to a NATS JetStream subject, each byte exactly once.

The position lives in the stream, with the data: every message says where its
bytes stand in which file (`tailsrv.client.jetstream_format`). A publisher that
starts asks the stream for the subject's last message, resumes after it, and
proves to tailsrv, with the last bytes published, that the file is still the
one they came from; when it is not (the file was rotated while no publisher
ran) the next generation starts at byte 0. There is no offset store beside the
stream that could disagree with it.

Exactly once rests on four things JetStream does atomically, even in a
replicated stream on nats-server 2.9.10:

- ``Nats-Expected-Last-Sequence``: every message names the stream sequence it
  must follow, so a message is stored only where the publisher believes the
  stream ends. The leader checks it against its count of messages in flight
  (``clseq``), not against what is already applied, so it holds while
  messages are pipelined. (The per-subject variant,
  ``Nats-Expected-Last-Subject-Sequence``, is not atomic in clustered
  streams before 2.9.21, nats-server issue 4320: it is not used.) Hence a
  stream of its own for the subject: the publisher predicts the sequence.
- ``Nats-Expected-Last-Msg-Id``: every pipelined message also names the id
  of the message published before it, and an id names a message's first and
  last byte. A message is stored only after one that ends where it starts,
  whoever published that one: when another publisher's message takes the
  place of one of this publisher's (refused), this publisher's next messages,
  already in flight, are refused too, instead of following bytes cut
  differently. The check is made as each message is applied, in the stream's
  order, on every replica.
- ``Nats-Msg-Id``: one id per place in the file's history, so a message
  stored twice by two publishers that start together is dropped the second
  time (acknowledged as a duplicate, which this publisher takes for another
  publisher at work).
- The first message after every (re)start is published alone and its
  acknowledgement awaited before any other: two publishers that read the same
  stream end cannot both go on; the one refused says so and exits. It names
  only the sequence it must follow, which is the message the stream was read
  to end with: a message id alone would not do, since a NATS server that
  restarts forgets the last message's id unless it is recent.

Messages are pipelined (`WINDOW_MESSAGES`, `WINDOW_BYTES`) and their
acknowledgements awaited in batches, as nats-py's own fastest way does. The
unacknowledged window is kept: when JetStream does not answer (unreachable, a
leader being elected) the publisher says so once, reads the stream's end again
with growing pauses, and publishes what the stream lacks of the window,
without reading tailsrv again. Memory is bounded by the window and the queue
between the reading thread and the publishing loop (`QUEUE_CHUNKS` reads of
`follower.RECV_BYTES`), whatever the backlog.

nats-py is asyncio; `follow` reads blocking sockets. It runs in a thread of its
own, handing chunks to the loop through a bounded queue. The tailsrv server
never imports this module.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from typing import Deque, List, NamedTuple, Optional, Tuple

import nats
import nats.errors
import nats.js.errors
from nats.js.api import StreamConfig

from ..protocol import PROOF_BYTES
from .follower import Replaced, follow, reconnect_delay
from .jetstream_format import CONTINUES, GENERATION, MSG_ID, OFFSET, message_id, position
from .records import Record, Records

log = logging.getLogger(__name__)

#: JetStream's header: store the message only if the stream's last sequence is this.
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"

#: JetStream's header: store the message only if the stream's last message has this id.
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"

#: Messages published and not yet acknowledged, at most: enough to keep the
#: server busy across a round trip of a loaded machine, few enough that a
#: recovery resends little.
WINDOW_MESSAGES = 2000

#: Bytes published and not yet acknowledged, at most: 64 chunks of 64 KiB.
WINDOW_BYTES = 4 * 1024 * 1024

#: Chunks read from tailsrv and not yet cut into messages: with the window, the
#: bound on tspub's memory however far behind it is (8 x 256 KiB).
QUEUE_CHUNKS = 8

#: Seconds to wait for an acknowledgement before taking JetStream for
#: unreachable: longer than a leader election of a loaded three-node cluster.
ACK_TIMEOUT = 10.0

#: Seconds an answer to a question about the stream may take.
REQUEST_TIMEOUT = 5.0

#: Seconds the first connection to NATS may take before tspub gives up: a
#: server that is not there at start is more often a wrong URL than an outage.
CONNECT_TIMEOUT = 5.0

#: Seconds closing the connection may take when tspub stops: it has nothing
#: left to say (what is unacknowledged is published again by the next tspub).
CLOSE_TIMEOUT = 2.0

#: Bytes of a message left for its headers when sizing data to the server's
#: maximum payload (plus the subject's length, which the message id repeats).
HEADER_ROOM = 256

#: JetStream's error codes for a message refused by its expected last message
#: id or sequence: another publisher's message, or one of this publisher's lost.
WRONG_LAST = (10070, 10071)

#: JetStream's error code for a message it could not store: the stream is full
#: (maximum messages or bytes, with discard new). A 503 like those of a cluster
#: electing a leader, but waiting does not cure it.
STORE_FAILED = 10077

#: Messages read back from the stream, at most, to gather the proof's bytes.
PROOF_MESSAGES = PROOF_BYTES


class PublishError(Exception):
    """A reason to stop that retrying would not cure; its text is for the user."""


class Conflict(PublishError):
    """The stream holds messages this publisher did not publish."""


class Place(NamedTuple):
    """Where the stream ends: the next byte of file ``generation`` is
    ``position``, and the stream's last sequence is ``sequence``."""

    generation: int
    position: int
    sequence: int


class Options(NamedTuple):
    """What tspub's command line says."""

    address: str
    servers: List[str]
    subject: str
    stream: str
    replicas: int
    mode: str
    credentials: Optional[str] = None
    token: Optional[str] = None


class Publisher:
    """One ``tspub``: `run` publishes until stopped or a `PublishError`."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.nc = None
        self.js = None
        #: The window: records published, not yet acknowledged, each with its
        #: ack's future (None when it is to be published again).
        self.window: Deque[Tuple[Record, Optional[asyncio.Future]]] = collections.deque()
        self.window_bytes = 0
        #: The stream's end as last acknowledged.
        self.acked: Place = Place(0, 0, 0)
        #: The sequence the next message published will get.
        self.next_sequence = 1
        #: The id of the message published last, which the next pipelined one
        #: must follow; None when the next is published alone.
        self.chain: Optional[str] = None
        self.failed: Optional[asyncio.Event] = None
        self.rejection: Optional[Exception] = None
        self.last_error: Optional[BaseException] = None
        self.troubled = False

    async def run(self) -> None:
        """Connect, find the stream's end, follow tailsrv from there, publish."""
        self.failed = asyncio.Event()
        await self._connect()
        try:
            await self._ensure_stream()
            place, before = await self._start_place()
            self.troubled = False
            self.acked, self.next_sequence = place, place.sequence + 1
            log.info("stream %s ends at generation %d byte %d (sequence %d): following %s "
                     "from there", self.options.stream, place.generation, place.position,
                     place.sequence, self.options.address)
            largest = self.nc.max_payload - HEADER_ROOM - len(self.options.subject)
            records = Records(self.options.mode, largest, place.generation, place.position)
            queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
            _start_reader(asyncio.get_running_loop(), queue, self.options.address,
                          place.position, before)
            await self._publish(queue, records, first_alone=True)
        finally:  # also when stopped (cancelled): a connection already lost is no error
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), CLOSE_TIMEOUT)

    async def _connect(self) -> None:
        options = self.options
        try:
            self.nc = await asyncio.wait_for(nats.connect(
                options.servers, error_cb=self._error, disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected, closed_cb=self._quiet,
                max_reconnect_attempts=-1, connect_timeout=REQUEST_TIMEOUT,
                user_credentials=options.credentials, token=options.token,
                verbose=False), CONNECT_TIMEOUT)
        except (asyncio.TimeoutError, OSError, nats.errors.Error) as error:
            why = describe(self.last_error or error)
            raise PublishError(f"{','.join(options.servers)}: cannot connect to NATS: {why}") \
                from None
        self.js = self.nc.jetstream(timeout=REQUEST_TIMEOUT,
                                    publish_async_max_pending=WINDOW_MESSAGES + 1)

    async def _error(self, error: BaseException) -> None:
        """nats-py's error callback: remember the error; a JetStream refusal of
        a pipelined message (nats-py reports it here, not on the message's
        future) ends the batch at once."""
        self.last_error = error
        if isinstance(error, nats.js.errors.APIError):
            self.rejection = error
            self.failed.set()

    async def _disconnected(self) -> None:
        """nats-py lost its connection (it reconnects by itself): say so once."""
        if not self.nc.is_closed:
            self._trouble("lost the connection to NATS, reconnecting")

    async def _reconnected(self) -> None:
        """nats-py is connected again: what was in flight when the connection
        dropped will never be acknowledged, so find out now what the stream
        holds rather than after `ACK_TIMEOUT`."""
        self.failed.set()

    async def _quiet(self) -> None:
        """Other connection events: what matters is whether JetStream answers."""

    async def _ensure_stream(self) -> None:
        """`_ensure_stream_once`, waiting while JetStream is slow to answer (a
        cluster electing a leader, or creating the stream for another tspub)."""
        failures = 0
        while True:
            try:
                return await self._ensure_stream_once()
            except _Unanswered as error:
                await self._pause(failures, error.__cause__)
                failures += 1

    async def _ensure_stream_once(self) -> None:
        """The stream exists, for this subject alone; created when missing."""
        options = self.options
        try:
            info = await _answer(self.js.stream_info(options.stream))
        except nats.js.errors.NotFoundError:
            try:
                await _answer(self.js.add_stream(StreamConfig(
                    name=options.stream, subjects=[options.subject],
                    num_replicas=options.replicas)))
            except nats.js.errors.APIError as error:
                raise PublishError(f"cannot create stream {options.stream} for "
                                   f"{options.subject}: {error.description}") from None
            except nats.errors.Error as error:  # time outs are `_Unanswered`: waited for
                raise PublishError(f"cannot create stream {options.stream}: "
                                   f"{describe(error)}") from None
            log.info("created stream %s for %s (%d replicas)", options.stream, options.subject,
                     options.replicas)
            return
        except nats.errors.Error as error:
            raise PublishError(f"JetStream does not answer ({describe(error)}): is "
                               f"it enabled on {','.join(options.servers)}?") from None
        if info.config.subjects != [options.subject]:
            raise PublishError(f"stream {options.stream} covers {', '.join(info.config.subjects)}: "
                               f"tspub needs a stream of its own for {options.subject} "
                               "(--stream NAME)")

    async def _start_place(self) -> Tuple[Place, bytes]:
        """`_stream_end` with the proof's bytes, waiting while the stream does
        not answer yet (a replicated stream just created electing its leader)."""
        failures = 0
        while True:
            try:
                return await self._stream_end(with_proof=True)
            except (asyncio.TimeoutError, nats.errors.Error) as error:
                self._refused(error)
                await self._pause(failures, error)
                failures += 1

    async def _pause(self, failures: int, error: BaseException) -> None:
        """Wait before trying again, saying why the first time."""
        self._trouble(describe(error))
        await asyncio.sleep(reconnect_delay(failures))

    def _trouble(self, why: str) -> None:
        """Say, once until it answers again, that JetStream does not answer."""
        if not self.troubled:
            self.troubled = True
            log.warning("JetStream does not answer (%s): holding at generation %d byte %d, "
                        "retrying", why, self.acked.generation, self.acked.position)

    def _untroubled(self) -> None:
        """Say that JetStream answers again, if it was said that it did not."""
        if self.troubled:
            self.troubled = False
            log.warning("JetStream answers again: publishing from generation %d byte %d",
                        self.acked.generation, self.acked.position)

    async def _stream_end(self, with_proof: bool = False) -> Tuple[Place, bytes]:
        """Where the stream ends, and (``with_proof``) the last bytes of its
        last file (up to `PROOF_BYTES`), read back from its messages."""
        stream, subject = self.options.stream, self.options.subject
        sequence = (await self.js.stream_info(stream)).state.last_seq
        try:
            last = await self.js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return Place(0, 0, sequence), b""
        generation, offset = _position(last)
        # max: a message stored between the two questions is the last one
        place = Place(generation, offset + len(last.data or b""), max(sequence, last.seq))
        if not with_proof:
            return place, b""
        parts, size, seq, message = [], 0, last.seq, last
        while True:
            parts.append(message.data or b"")
            size += len(message.data or b"")
            if size >= PROOF_BYTES or offset == 0 or seq <= 1 or len(parts) >= PROOF_MESSAGES:
                break
            seq -= 1
            message = await self.js.get_msg(stream, seq)
            if _position(message) != (generation, offset - len(message.data or b"")):
                break  # another file, or a gap (expired): prove with what is contiguous
            offset -= len(message.data or b"")
        return place, b"".join(reversed(parts))[-PROOF_BYTES:]

    async def _publish(self, queue: asyncio.Queue, records: Records, first_alone: bool) -> None:
        """Cut what the reader hands over into records and publish them."""
        while True:
            if queue.empty() and self.window:
                await self._settle()  # idle: know that all is stored before waiting
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Replaced):
                batch = records.replaced()
                log.warning("file replaced: publishing the new one as generation %d",
                            records.generation)
            else:
                batch = records.feed(item)
            for record in batch:
                if first_alone:  # through a recovery: published alone, then the rest
                    self.window.append((record, None))
                    self.window_bytes += len(record.data)
                    await self._recover()
                    first_alone = False
                    continue
                await self._send(record)
                if len(self.window) >= WINDOW_MESSAGES or self.window_bytes >= WINDOW_BYTES:
                    await self._settle()

    async def _send(self, record: Record) -> None:
        """Publish ``record`` after the window, not waiting for its ack."""
        headers = self._headers(record)
        if self.chain is not None:
            headers[EXPECTED_LAST_MSG_ID] = self.chain
        self.chain = headers[MSG_ID]
        try:
            future = await self.js.publish_async(self.options.subject, record.data,
                                                 headers=headers)
        except (nats.errors.Error, OSError) as error:  # disconnected, buffer full...
            self.last_error = error
            future = None
        self.window.append((record, future))
        self.window_bytes += len(record.data)
        self.next_sequence += 1

    def _headers(self, record: Record) -> dict:
        headers = {OFFSET: str(record.offset), GENERATION: str(record.generation),
                   MSG_ID: message_id(self.options.subject, record.generation, record.offset,
                                      record.end),
                   EXPECTED_LAST_SEQUENCE: str(self.next_sequence - 1)}
        if record.continues:
            headers[CONTINUES] = "1"
        return headers

    async def _settle(self) -> None:
        """Wait until every record of the window is acknowledged; recover when
        JetStream does not answer or refuses one."""
        while self.window:
            await self._wait_acks()
            if self._take_acks():
                self._untroubled()
                return
            if not self.failed.is_set() and any(f is None or not f.done() for _, f in self.window):
                self._trouble(f"no acknowledgement within {ACK_TIMEOUT:g} s")
            await self._recover()

    async def _wait_acks(self) -> None:
        """Wait until the window's acks are in, one is refused, or
        `ACK_TIMEOUT` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACK_TIMEOUT
        waiter = asyncio.ensure_future(self.failed.wait())
        try:
            for _, future in reversed(self.window):  # the newest first: then the rest are in
                if future is None or self.failed.is_set():
                    return
                if not future.done():
                    await asyncio.wait([future, waiter], timeout=max(deadline - loop.time(), 0),
                                       return_when=asyncio.FIRST_COMPLETED)
                    if not future.done():
                        return
        finally:
            waiter.cancel()

    def _take_acks(self) -> bool:
        """Drop the acknowledged records at the window's head; True when all
        were, False at the first that was not or was refused."""
        while self.window:
            record, future = self.window[0]
            if future is None or not future.done() or future.cancelled():
                return False
            if future.exception() is not None:
                self.rejection = future.exception()
                return False
            ack = future.result()
            if ack.duplicate or ack.seq != self.acked.sequence + 1:
                return False  # another publisher's message holds this place
            self.window.popleft()
            self.window_bytes -= len(record.data)
            self.acked = Place(record.generation, record.end, ack.seq)
        return True

    async def _recover(self) -> None:
        """Find out what the stream holds of the window and publish the rest
        again: the first alone, awaiting its ack, then the others pipelined.
        While JetStream does not answer, says so once and tries again with
        growing pauses."""
        failures = 0
        while True:
            self._refused(self.rejection)
            self.rejection = None
            self.failed.clear()
            pending: List[Record] = []
            try:
                place, _ = await self._stream_end()
                self._match(place)
                for record, future in self.window:
                    if future is not None:
                        future.cancel()
                    pending.append(record)
                self.window.clear()
                self.window_bytes = 0
                self.next_sequence = self.acked.sequence + 1
                if pending:
                    await self._store_alone(pending[0])
                    for record in pending[1:]:
                        await self._send(record)
                self._untroubled()
                return
            except (asyncio.TimeoutError, nats.errors.Error, OSError) as error:
                self._refused(error)
                if pending and not self.window:  # put them back, as not published
                    self.window.extend((record, None) for record in pending)
                    self.window_bytes = sum(len(record.data) for record in pending)
                await self._pause(failures, error)
                failures += 1

    def _refused(self, error: Optional[BaseException]) -> None:
        """Raise `PublishError` when JetStream refused a message for a reason
        that waiting does not cure (the stream is full, the message too big)."""
        if isinstance(error, nats.js.errors.APIError) and error.err_code not in WRONG_LAST \
                and (error.code != 503 or error.err_code == STORE_FAILED):
            record = self.window[0][0] if self.window else None
            where = f" the message at generation {record.generation} byte {record.offset}" \
                if record else ""
            raise PublishError(f"stream {self.options.stream} refused{where}: "
                               f"{describe(error)}")

    async def _store_alone(self, record: Record) -> None:
        """Publish ``record`` and wait for its acknowledgement."""
        headers = self._headers(record)
        self.chain = None
        ack = await self.js.publish(self.options.subject, record.data, timeout=ACK_TIMEOUT,
                                    headers=headers)
        if ack.duplicate:
            raise _Duplicate("another publisher stored this message first")
        self.acked = Place(record.generation, record.end, ack.seq)
        self.next_sequence = ack.seq + 1
        self.chain = headers[MSG_ID]

    def _match(self, place: Place) -> None:
        """Drop from the window what the stream already holds (its ack was
        lost); `Conflict` when the stream ends anywhere but after the last
        acknowledged record or after one of the window's."""
        if place == self.acked:
            return
        stored = place.sequence - self.acked.sequence
        if 0 < stored <= len(self.window):
            record = self.window[stored - 1][0]
            if (record.generation, record.end) == place[:2]:
                for _ in range(stored):
                    record, future = self.window.popleft()
                    self.window_bytes -= len(record.data)
                self.acked = place
                return
        raise Conflict(
            f"stream {self.options.stream} holds messages this tspub did not publish (it ends "
            f"at generation {place.generation} byte {place.position}, sequence "
            f"{place.sequence}, where this tspub expected sequence {self.acked.sequence}): "
            f"is another tspub publishing {self.options.subject}?")


class _Unanswered(Exception):
    """JetStream is there but cannot answer now (its cause says why): a
    cluster without a leader or quorum. Waiting cures it."""


async def _answer(request):
    """The answer to ``request``, or `_Unanswered` for a time out or
    JetStream's "temporarily unavailable" (a 503 with an error code; one
    without is "no responders": JetStream is not enabled at all)."""
    try:
        return await request
    except asyncio.TimeoutError as error:  # nats-py's TimeoutError is one
        raise _Unanswered() from error
    except nats.js.errors.APIError as error:
        if error.code == 503 and error.err_code is not None and error.err_code != STORE_FAILED:
            raise _Unanswered() from error
        raise


class _Duplicate(nats.errors.Error):
    """JetStream had the message already: another publisher stored it."""


def _position(message) -> Tuple[int, int]:
    """A stored message's ``(generation, offset)``, from its headers."""
    found = position(message.headers)
    if found is None:
        raise PublishError(f"message {message.seq} of the stream lacks a valid {GENERATION} "
                           f"or {OFFSET} header: not published by tspub")
    return found


def describe(error: BaseException) -> str:
    """A NATS or JetStream error in a few words, for a one-line message."""
    if isinstance(error, nats.js.errors.APIError) and error.description:
        return error.description
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _start_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, address: str,
                  position: int, before: bytes) -> threading.Thread:
    """A thread following tailsrv from ``position`` (proving it with
    ``before``), putting its chunks and `Replaced` notices on ``queue``, and
    an exception if following fails."""
    def put(item) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def read() -> None:
        try:
            for chunk in follow(address, position, before=before, on_replaced=put):
                put(chunk)
        except BaseException as error:  # handed to the loop, which raises it
            try:
                put(error)
            except RuntimeError:  # the loop has ended: nobody to tell
                pass

    thread = threading.Thread(target=read, name="tspub-reader", daemon=True)
    thread.start()
    return thread

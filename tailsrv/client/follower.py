"""Following a tailsrv server from Python: `follow` yields the file's bytes,
`follow_lines` its lines, each exactly once and in order, across dropped
connections.

The client remembers the absolute position of the next byte it expects. When a
connection drops it reconnects, waiting longer after each failed attempt
(`reconnect_delay`), and asks for exactly that byte. A start that is not an absolute
byte (a negative offset, or a line count) is resolved by the server: the client
adds the ``?`` extension to its first header and the server answers with the
byte position it chose, one decimal line before the data (see
`tailsrv.protocol`). Plain non-negative offsets, and any start when reconnecting
is off, send the header of the original protocol, which every server speaks.

A resume proves that it continues the same file: the header carries a digest
of the last bytes received (the ``#K:DIGEST`` extension), and a server whose
file no longer holds them (it was replaced, or truncated: log rotation) refuses.
The client then tells its caller (`Replaced`) and follows the new file from its
start, which the server sends next: no byte of one file is ever taken for a
byte of another. A server that does not know proofs (the original tailsrv)
closes such a connection at once; after `PROOF_ATTEMPTS` of those in a row the
client says so in the log and resumes as before, without proofs.

The sockets are ordinary blocking sockets, looked up in the ``socket`` module at
call time and waited on with ``time.sleep``: in a program that gevent has
monkey-patched they are gevent's, and following a server is cooperative. This
module never patches anything itself. TCP keepalive is on, so that a server that
vanished without closing the connection (a crashed machine, a cut cable) is
noticed and reconnected to.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

from ..keepalive import enable_keepalive
from ..names import LIST, named_header, parse_list_line
from ..protocol import PROOF_BYTES, REFUSAL, Proof, make_proof
from ..wrongport import HTTP_ANSWER, MAX_ANSWER_BYTES, summary

log = logging.getLogger(__name__)

#: Seconds a connection attempt may take. Afterwards reads wait as long as the
#: file is idle: a quiet file is normal, and keepalive notices a dead server.
CONNECT_TIMEOUT = 10.0

#: Bytes asked of the socket per read: a few pages, so a fast stream is read in
#: few calls without holding much memory per follower.
RECV_BYTES = 256 * 1024

#: Seconds before the first reconnection attempt: short, because most drops
#: are a server restart that is over in a moment.
RECONNECT_DELAY = 0.25

#: The longest wait between attempts, however long the server stays away: a
#: client finds a server that comes back within half a minute.
MAX_RECONNECT_DELAY = 30.0

#: Longest announcement line accepted: a signed 64-bit number and its newline.
MAX_ANNOUNCEMENT_BYTES = 21

#: Resume proofs in a row that a server may close without an answer before the
#: client takes it for one that does not know them (the original rejects them):
#: more than one, so that a server stopping just then is not taken for it.
PROOF_ATTEMPTS = 2

#: Where to connect: ``(host, port)`` for TCP, or a unix socket's path.
Target = Union[Tuple[str, int], str]


class BadAddress(ValueError):
    """An address that is none of ``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH``."""


class ProtocolError(Exception):
    """The server answered something the protocol does not allow; retrying
    would not help."""


class NotTailsrv(ProtocolError):
    """The server answered a header in HTTP: it is an HTTP port (tailsrv's
    --http port, or a web server), not a tailsrv stream port."""


class NoAnswer(ConnectionError):
    """The server closed the connection before answering the header's ``?``
    or resume proof, as a server without those extensions does."""


class Replaced(NamedTuple):
    """Notice that the server's file is no longer the one being followed: the
    server at ``address`` refused to resume at byte ``position`` of it (the
    bytes before differ, or the file is shorter). What follows is the new
    file, from its start."""

    address: str
    position: int


#: Called with the notice when the file was replaced, before its first byte.
OnReplaced = Callable[[Replaced], None]


def parse_address(text: str) -> Target:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> ``(host, port)``; ``unix:PATH`` -> PATH.

    An IPv6 address needs its brackets, since its colons would make the port
    ambiguous. Raises `BadAddress` with a reason a user can act on.
    """
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise BadAddress(f"{text!r}: no path after 'unix:'")
        return path
    host, colon, port = text.rpartition(":")
    if not colon:
        raise BadAddress(f"{text!r}: expected HOST:PORT, [IPV6]:PORT or unix:PATH")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise BadAddress(f"{text!r}: put an IPv6 address in brackets, as in [::1]:4321")
    if not host or "[" in host or "]" in host:
        raise BadAddress(f"{text!r}: no host before the port")
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise BadAddress(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def header(offset: int = 0, lines: Optional[int] = None, announce: bool = False,
           proof: Optional[Proof] = None) -> bytes:
    """The header asking for ``offset`` (bytes) or, when given, ``lines``;
    with a ``proof`` (see `tailsrv.protocol.make_proof`) of the bytes before."""
    number = b"%d" % offset if lines is None else b"%dl" % lines
    return number + (b"?" if announce else b"") + (proof.encode() if proof else b"") + b"\n"


def parse_announcement(buffer: bytes) -> Optional[Tuple[Optional[int], bytes]]:
    """Split what a ``?`` header or a resume proof got back into ``(position,
    file data)``; the position is None when the server refused the proof.

    None while the announcement's newline has not arrived yet; `ProtocolError`
    when the bytes cannot be an announcement.
    """
    if buffer.startswith(REFUSAL):
        return None, buffer[len(REFUSAL):]
    end = buffer.find(b"\n", 0, MAX_ANNOUNCEMENT_BYTES)
    if end < 0:
        if len(buffer) >= MAX_ANNOUNCEMENT_BYTES:
            raise ProtocolError(f"expected a start position, got {buffer[:24]!r}")
        return None
    digits = buffer[:end]
    if not (digits.isdigit() and digits.isascii()):
        raise ProtocolError(f"expected a start position, got {digits!r}")
    return int(digits), buffer[end + 1:]


def reconnect_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` attempts in a row came to nothing:
    `RECONNECT_DELAY`, doubling with each failure, at most `MAX_RECONNECT_DELAY`."""
    return min(RECONNECT_DELAY * 2 ** min(failures, 32), MAX_RECONNECT_DELAY)


def follow(address: str, offset: int = 0, lines: Optional[int] = None,
           reconnect: bool = True, before: bytes = b"",
           on_replaced: Optional[OnReplaced] = None, file: Optional[str] = None,
           announce: bool = False, wait: bool = True) -> Iterator[bytes]:
    """Yield the bytes of the file the server at ``address`` streams.

    Starts at byte ``offset`` (negative: that many bytes before the end) or,
    when ``lines`` is given, at a line (negative: the last ``-lines`` lines, as
    ``tail -n``; positive: after the first ``lines`` lines). Never ends by
    itself while ``reconnect`` is true: a dropped connection, or a server that
    is not there yet, is retried after `reconnect_delay`, resuming after the last byte
    yielded. With ``reconnect`` false the generator ends when the server closes
    the connection and raises OSError on a network error, its ``filename``
    being ``address``.

    When the server's file turns out to be another one (replaced by log
    rotation, or truncated), the client logs a warning, calls
    ``on_replaced(notice)`` (a `Replaced`) if given, and yields the new file
    from its start. ``before`` is what the caller already has of the file just
    before ``offset`` (a mirror's last bytes): with it the first connection
    proves its start too.

    ``file`` names the file (its base name) of a server of several files
    (see `list_files`); None asks for the one file of a server of one.
    ``announce`` asks the server to announce even a plain start (``0?``), so
    that an HTTP port is recognised on the first connection (a start that is
    relative, and every resume, ask for an answer anyway); a server that does
    not know ``?`` (the original) is then asked again without it. With
    ``wait`` false, a first connection that fails (the name does not resolve,
    the connection is refused) raises that OSError rather than being retried:
    most likely the address is wrong.

    Raises `BadAddress` for a malformed address when called, before any I/O;
    the iterator raises `ProtocolError` if the server sends a malformed start
    position, `NotTailsrv` if it answers in HTTP.
    """
    return _notices(_stream(address, _target(address, offset, lines), offset, lines, reconnect,
                            before, file, announce, wait), on_replaced)


def follow_lines(address: str, offset: int = 0, lines: Optional[int] = None,
                 reconnect: bool = True, before: bytes = b"",
                 on_replaced: Optional[OnReplaced] = None,
                 file: Optional[str] = None) -> Iterator[bytes]:
    """Like `follow`, but yield complete lines, each ending with ``b"\\n"``.

    A line is held back until its newline arrives. Starting at a byte offset
    in the middle of a line makes the first line a partial one. When the file
    is replaced, an unfinished last line of the old file is dropped.
    """
    chunks = _stream(address, _target(address, offset, lines), offset, lines, reconnect, before,
                     file)
    return _notices(split_lines(chunks), on_replaced)


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Regroup byte chunks into lines ending with ``b"\\n"``; a final
    unterminated piece is never yielded. A `Replaced` notice among the chunks
    drops the unterminated piece (it belongs to the old file) and is passed on."""
    partial = []
    for chunk in chunks:
        if isinstance(chunk, Replaced):
            partial = []
            yield chunk
            continue
        end = chunk.rfind(b"\n")
        if end < 0:
            partial.append(chunk)
            continue
        partial.append(chunk[:end])
        for line in b"".join(partial).split(b"\n"):
            yield line + b"\n"
        partial = [chunk[end + 1:]]


def _notices(items: Iterator, on_replaced: Optional[OnReplaced]) -> Iterator[bytes]:
    """The bytes of ``items``; its `Replaced` notices are logged and handed to
    ``on_replaced``."""
    for item in items:
        if isinstance(item, Replaced):
            log.warning("file replaced; following the new file (%s no longer has the "
                        "%d bytes read of the old one)", item.address, item.position)
            if on_replaced is not None:
                on_replaced(item)
        else:
            yield item


def _target(address: str, offset: int, lines: Optional[int]) -> Target:
    """Check `follow`'s arguments, before any I/O; return where to connect."""
    if lines is not None and offset:
        raise ValueError("give an offset or a line count, not both")
    return parse_address(address)


def list_files(address: str) -> List[Tuple[str, int]]:
    """The files a server of several files serves: ``(name, size)`` sorted
    by name (the ``*`` header, see `tailsrv.names`). Raises `BadAddress`,
    OSError (its ``filename`` the address), or `ProtocolError` when the
    server does not answer with a list (a server of one file closes at once:
    an empty list)."""
    try:
        with _connect(parse_address(address)) as sock:
            sock.sendall(LIST + b"\n")
            data = b""
            while True:
                more = sock.recv(RECV_BYTES)
                if not more:
                    break
                data += more
    except OSError as error:
        if error.filename is None:
            error.filename = address
        raise
    try:
        return [parse_list_line(line) for line in data.split(b"\n")[:-1]]
    except ValueError as error:
        raise ProtocolError(f"{address}: {error}") from None


def _stream(address: str, target: Target, offset: int, lines: Optional[int], reconnect: bool,
            before: bytes, file: Optional[str] = None, announce: bool = False,
            wait: bool = True) -> Iterator[Union[bytes, Replaced]]:
    """`follow`'s generator: the file's bytes, and a `Replaced` notice before
    the bytes of each new file."""
    # The absolute position of the next byte (None until the server says it),
    # and the bytes just before it, for the resume proof.
    position = offset if lines is None and offset >= 0 else None
    first = named_header(file, header(offset, lines, announce=reconnect and position is None))
    tail = before[-PROOF_BYTES:] if position else b""
    ask = announce and position is not None  # a plain start asked to announce
    failures = 0
    unanswered = 0  # proofs in a row closed without an answer
    plain = False   # the server does not know proofs: resume without them
    connected = False  # at least once: from then on a failure is retried
    outage = False     # a failure was reported, its end not yet
    said = None        # why, as the outage's last report said
    while True:
        proof = None if plain or not position else make_proof(tail)
        try:
            with _connect(target) as sock:
                sock.sendall(first if position is None
                             else named_header(file, header(position, announce=ask,
                                                            proof=proof)))
                data = b""
                if ask or proof is not None or position is None and reconnect:
                    answer, data = _read_announcement(sock, address)
                    unanswered = 0
                    if answer is None:  # refused: the new file follows, from 0
                        yield Replaced(address, position)
                        answer, tail = 0, b""
                    position = answer
                ask = False
                if outage:
                    log.warning("connected to %s again%s", address,
                                "" if position is None else f"; resuming at byte {position}")
                connected, outage = True, False
                while True:
                    data = data or sock.recv(RECV_BYTES)
                    if not data:
                        break
                    failures = 0
                    if position is not None:
                        position += len(data)
                        tail = data[-PROOF_BYTES:] if len(data) >= PROOF_BYTES else \
                            (tail + data)[-PROOF_BYTES:]
                    yield data
                    data = b""
            why = "closed by the server"
        except NoAnswer as error:
            if file is not None:  # only a server of several files takes a name: its
                error = NoAnswer(f"it does not serve {file} now")  # silence is the name's
            elif ask:  # a server without '?' (the original): a plain start, at once
                ask = False
                continue
            elif proof is not None:
                unanswered += 1
                plain = unanswered >= PROOF_ATTEMPTS or not reconnect
                if plain:
                    log.warning("%s closes connections that prove their resume position "
                                "(an original tailsrv?): resuming without a proof, so a "
                                "replaced file is not noticed", address)
                    continue
            if not reconnect:
                error.filename = address
                raise
            why = str(error)
        except OSError as error:
            if not reconnect or not (wait or connected):
                if error.filename is None:
                    error.filename = address  # so that messages say which server
                raise
            why = error.strerror or str(error) or type(error).__name__
        if not reconnect:
            return
        delay = reconnect_delay(failures)
        failures += 1
        # Said once for each outage and reason, not at every attempt; and its end, above.
        log.log(logging.DEBUG if outage and why == said else logging.WARNING,
                "connection to %s: %s; reconnecting in %g s, then at longer intervals "
                "(up to %g s) until it answers", address, why, delay, MAX_RECONNECT_DELAY)
        outage, said = True, why
        time.sleep(delay)


def _connect(target: Target) -> socket.socket:
    """A connected blocking socket: only connecting has a timeout."""
    if isinstance(target, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        enable_keepalive(sock)
    sock.settimeout(None)
    return sock


def _read_announcement(sock: socket.socket, address: str) -> Tuple[Optional[int], bytes]:
    """Read until the start position (or a refusal) is in; return it and the
    data after it. `NotTailsrv` when an HTTP answer came instead."""
    data = b""
    while True:
        if data.startswith(HTTP_ANSWER):
            raise NotTailsrv(f"{address} is not a tailsrv stream port: it "
                             f"{summary(_rest(sock, data))}")
        parsed = parse_announcement(data)
        if parsed is not None:
            return parsed
        more = sock.recv(RECV_BYTES)
        if not more:
            raise NoAnswer("closed before announcing the start position (as a server "
                           "without the '?' and resume proof extensions does)")
        data += more


def _rest(sock: socket.socket, data: bytes) -> bytes:
    """``data`` and what follows it until the server closes, up to
    `MAX_ANSWER_BYTES` and for `CONNECT_TIMEOUT` seconds at most."""
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        while len(data) < MAX_ANSWER_BYTES:
            more = sock.recv(MAX_ANSWER_BYTES)
            if not more:
                break
            data += more
    except OSError:
        pass
    return data[:MAX_ANSWER_BYTES]

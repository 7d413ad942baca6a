"""The wrong port: a client of one of tailsrv's two protocols at the other's
port is recognised at once and told so, in its own protocol, in one line.

tailsrv serves a file on two kinds of port, each with its own protocol: the
stream port (``-p``) takes a header (``0``, ``-10l``), the ``--http`` port an
HTTP request. Pointed at the wrong one, each client used to wait in silence
for what never came (a browser got an empty reply, tscat waited 30 s). The
rules here, without I/O, say what to answer instead:

- On the stream port, a header that is the start of an HTTP request
  (`http_request`) gets a short HTTP 400 (`http_answer`, framed by h11,
  imported only then) saying that this is the stream port, and where the
  viewer is when there is one. Like any bad header it gets no file data and is
  closed.
- On the HTTP port, a first line that is complete but no HTTP request line
  (`not_a_request`) gets a 400 at once, saying it is the HTTP port when the
  line is a tailsrv header, rather than after the request head's timeout.
- A client that asked the stream protocol's question (a ``?`` header, a resume
  proof: an answer line is due) and got an HTTP status line instead
  (`HTTP_ANSWER`) reports it in one line (`summary`). Only there: the file's
  own bytes, which may be anything (an HTTP dump), are never read that way.

Recognising a request line is the one rule of HTTP's own here, and only its
shape (RFC 9112, section 3: method, a space, a target, a space, a version);
h11 parses and frames everything else.
"""

from __future__ import annotations

import re
from typing import Optional

from .protocol import BadHeader, parse_header

#: An HTTP request line: a method (a token), the target, the version.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \x00-\x1f\x7f]+ HTTP/\d\.\d\r?")

#: The start of a request too long for the stream port's header buffer: a
#: method in capitals and a space, then a target (``/``, ``*``, ``http:``).
_REQUEST_START = re.compile(rb"[A-Z]{3,10} (?:/|\*|https?://)")

#: What a server answering in HTTP sends first.
HTTP_ANSWER = b"HTTP/"

#: Most bytes of an HTTP answer a client reads to say what it was.
MAX_ANSWER_BYTES = 4096


def http_request(received: bytes) -> Optional[str]:
    """The method and target (``GET /``) when the bytes a stream-port client
    sent (a bad header) are the start of an HTTP request, else None."""
    line = received.split(b"\n", 1)[0]
    if _REQUEST_LINE.fullmatch(line) or (b"\n" not in received
                                         and _REQUEST_START.match(received)):
        method, _, rest = line.partition(b" ")
        return f"{method.decode()} {rest.split(b' ', 1)[0][:60].decode('ascii', 'replace')}"
    return None


def stream_port_text(viewer: Optional[str]) -> str:
    """What an HTTP request on the stream port is told; ``viewer`` says where
    the ``--http`` front is (`viewer_at`), when there is one."""
    where = viewer or "this server has no HTTP port (start it with --http ADDR:PORT)"
    return (f"This is tailsrv's stream port, not HTTP: clients send a header such as "
            f"0 or -10l and a newline (tscat, nc); {where}.")


def viewer_at(host: str, port: int) -> str:
    """Where the viewer of an HTTP front listening on ``host``, ``port`` is,
    in words: its URL, or its port when it listens on every address."""
    if host in ("", "0.0.0.0", "::"):
        return f"the viewer is on port {port} of this host (http://HOST:{port}/)"
    return f"the viewer is at http://{f'[{host}]' if ':' in host else host}:{port}/"


def not_a_request(head: bytes) -> Optional[str]:
    """Why the bytes an HTTP connection began with cannot become a request:
    the first line is complete and is no request line. None while they may."""
    line, newline, _ = head.lstrip(b"\r\n").partition(b"\n")
    if not newline or _REQUEST_LINE.fullmatch(line):
        return None
    try:
        parse_header(line)
    except BadHeader:
        return "not an HTTP request line"
    return ("This is tailsrv's HTTP port: headers such as 0 or -10l go to its stream port "
            "(-p); here, GET /stream?start=-10l or the viewer at /.")


def http_answer(received: bytes, status: int, text: str) -> bytes:
    """A complete HTTP response with ``text`` as its one-line body, framed by
    h11 for the request whose start is ``received`` (all of it that will be
    read), and closing the connection."""
    import h11  # only when a stray HTTP request comes: the stream port never needs it
    from http import HTTPStatus

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(received)
    conn.receive_data(b"")  # nothing more will be read
    try:
        conn.next_event()  # the request, or (cut short) an error: a response may follow
    except h11.RemoteProtocolError:
        pass
    body = text.encode() + b"\n"
    return (conn.send(h11.Response(status_code=status, reason=HTTPStatus(status).phrase,
                                   headers=[("Content-Type", "text/plain; charset=utf-8"),
                                            ("Content-Length", str(len(body))),
                                            ("Connection", "close")]))
            + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))


def summary(answer: bytes) -> str:
    """An HTTP answer (what came where a stream answer line was due) in one
    line: its status and the first line of its body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ", 1)[-1]
    first = body.strip().split(b"\n", 1)[0].strip()
    said = f": {first.decode('utf-8', 'replace')}" if first else ""
    return f"answered in HTTP ({status.decode('ascii', 'replace')}){said}"

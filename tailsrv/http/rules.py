"""The HTTP interface's rules, free of I/O: a parsed request in, an answer out.

h11 parses the request; this module decides what it gets (in the spirit of
`tailsrv.protocol`, and tested the same way, without sockets):

- ``GET /stream?start=H``: the file from the position header ``H`` names,
  where ``H`` is anything the TCP protocol takes (``0``, ``1000``, ``-4096``,
  ``-100l``, ``25l``; default ``-100l``) but the ``?`` suffix, whose answer is
  the ``Tailsrv-Start`` response header here. The answer is a `Stream`; the
  server resolves it to a byte and sends the file as the body.
- ``GET /stream?start=N&before=B64``: a resume, as the TCP protocol's resume
  proof (``N#K:DIGEST``) of the K bytes ``B64`` holds (base64url, padded or
  not): the server answers from N if the file still holds them there, or else
  from byte 0 of the file that replaced it.
- ``GET /stream?file=NAME&start=H``: the same from the file ``NAME`` of a
  server of several files (``file`` may be left out when it serves one). A
  name that cannot be a served file's (``/``, ``..``, NUL, empty) is a 404
  here; one the server does not serve, a 404 there.
- ``GET /files``: a `Listing`; the server answers with `files_reply`, JSON,
  a list of ``{"name", "size", "modified"}`` sorted by name.
- ``GET /`` and the viewer's files: a `Reply` with the page (package data in
  ``tailsrv/http/static``).
- Anything else: a `Reply` with the status and a one-line reason.

Every answer carries the same guard headers (`SECURITY_HEADERS`), and, with
credentials set, anything without them gets 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from importlib.resources import files
from typing import Dict, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

from ..names import check_name
from ..protocol import PROOF_BYTES, BadHeader, Request, make_proof, parse_header

Headers = List[Tuple[str, str]]

#: Where a stream starts when the request names no ``start``: as ``tail``.
DEFAULT_START = b"-100l"

#: The stream's path.
STREAM_PATH = "/stream"

#: The path of the list of files.
FILES_PATH = "/files"

#: The type of the list of files.
JSON = "application/json"

#: The characters of base64url (RFC 4648, section 5), the ``before`` parameter's.
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

#: Most base64url characters a ``before`` may have: PROOF_BYTES of them encoded.
_B64_CHARS = -(-PROOF_BYTES * 4 // 3)

#: The one method served.
ALLOW = "GET"

#: The realm browsers show in their login prompt.
REALM = "tailsrv"

#: On every response. The page loads only its own script and style (no inline
#: script, nothing from elsewhere) and may not be framed; nothing is sniffed
#: into another type (the stream is text/plain, whatever the log holds).
SECURITY_HEADERS: Headers = [
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]

#: The stream's type: logs are text, and UTF-8 is what a page decodes them as.
TEXT = "text/plain; charset=utf-8"

#: The viewer's files, by path: (file in tailsrv/http/static, content type).
PAGES: Dict[str, Tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
    "/viewer.css": ("viewer.css", "text/css; charset=utf-8"),
}


class Reply(NamedTuple):
    """A complete response: status, headers (the guard headers added by the
    server), body."""

    status: int
    headers: Headers
    body: bytes


class Stream(NamedTuple):
    """The file ``name`` (None: the one file) from ``request``'s position,
    as the body of a 200."""

    request: Request
    name: Optional[str] = None


class Listing(NamedTuple):
    """The list of files served, which the server has (`files_reply`)."""


def files_reply(files: List[Tuple[str, os.stat_result]]) -> Reply:
    """The answer to ``GET /files``: the files (name, status) as JSON."""
    body = json.dumps([{"name": name, "size": st.st_size, "modified": st.st_mtime}
                       for name, st in files])
    return Reply(200, [("Content-Type", JSON), ("Cache-Control", "no-store")],
                 body.encode("utf-8", "surrogateescape"))


def no_file(name: Optional[str]) -> Reply:
    """The 404 of a stream whose file is not served."""
    if name is None:
        return error(404, "not found: several files are served: name one, "
                          f"{STREAM_PATH}?file=NAME (the list is at {FILES_PATH})")
    return error(404, f"not found: no file named {name!r} is served")


def error(status: int, reason: str, headers: Headers = ()) -> Reply:
    """A plain-text error: the reason as one line."""
    return Reply(status, [("Content-Type", TEXT), *headers], reason.encode() + b"\n")


def load_pages() -> Dict[str, Reply]:
    """The viewer's files as replies, read once from the package."""
    static = files(__package__).joinpath("static")
    return {path: Reply(200, [("Content-Type", kind), ("Cache-Control", "no-cache")],
                        static.joinpath(name).read_bytes())
            for path, (name, kind) in PAGES.items()}


def answer(method: bytes, target: bytes, headers: List[Tuple[bytes, bytes]],
           pages: Dict[str, Reply], credentials: Optional[bytes] = None
           ) -> Union[Reply, Stream]:
    """What a request gets. ``credentials`` is ``user:password`` when the
    front asks for them (`load_credentials`)."""
    if credentials is not None and not authorized(headers, credentials):
        return error(401, "unauthorized: this log needs a user name and password",
                     [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')])
    url = urlsplit(target.decode("ascii", "replace"))
    if url.path not in (STREAM_PATH, FILES_PATH) and url.path not in pages:
        return error(404, f"not found: the log is at {STREAM_PATH}, its viewer at /")
    if method != ALLOW.encode():
        return error(405, f"method not allowed: only {ALLOW}", [("Allow", ALLOW)])
    if url.path == FILES_PATH:
        return Listing()
    if url.path != STREAM_PATH:
        return pages[url.path]
    try:
        name = file_name(url.query)
    except BadHeader as reason:
        return error(404, f"not found: {reason}")
    try:
        request = start_request(url.query)
    except BadHeader as reason:
        return error(400, f"bad start: {reason}")
    try:
        return Stream(with_proof(request, url.query), name)
    except BadHeader as reason:
        return error(400, f"bad before: {reason}")


def file_name(query: str) -> Optional[str]:
    """The ``file`` parameter, a file name as `os.listdir` gives it (bytes
    that are not UTF-8 as surrogate escapes); None without one. BadHeader
    when it cannot be the name of a served file."""
    value = _parameter(query, "file")
    if value is None:
        return None
    check_name(value)
    return os.fsdecode(value)


def start_request(query: str) -> Request:
    """The ``start`` parameter of a stream's query string as a `Request`;
    BadHeader when it is not one the TCP protocol takes."""
    value = _parameter(query, "start")
    if value is None:
        return parse_header(DEFAULT_START)
    if value.rstrip().endswith(b"?"):
        raise BadHeader("no '?' here: the Tailsrv-Start response header says where the "
                        "stream starts")
    return parse_header(value)


def with_proof(request: Request, query: str) -> Request:
    """``request`` with the resume proof of the query string's ``before``, the
    last bytes the client received, base64url-encoded (padding optional);
    ``request`` itself when there is no ``before``. BadHeader when the value is
    not 1 to `PROOF_BYTES` bytes of base64url, or ``start`` is not a byte
    position at least that large."""
    value = _parameter(query, "before")
    if value is None:
        return request
    text = value.rstrip(b"=")
    if len(text) > _B64_CHARS or not _B64URL.issuperset(text) or len(text) % 4 == 1:
        raise BadHeader(f"expected 1 to {PROOF_BYTES} bytes in base64url")
    before = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    proof = make_proof(before)
    if proof is None:
        raise BadHeader(f"expected 1 to {PROOF_BYTES} bytes in base64url")
    if request.lines or request.offset < proof.length:
        raise BadHeader("a resume needs a byte start at least as large as the bytes "
                        "before it")
    return request._replace(announce=True, proof=proof)


def _parameter(query: str, name: str) -> Optional[bytes]:
    """The query string's one ``name`` value, None without one; BadHeader
    when it is given more than once."""
    values = parse_qs(query, keep_blank_values=True, errors="surrogateescape").get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise BadHeader(f"{name} given more than once")
    return values[0].encode("utf-8", "surrogateescape")


def authorized(headers: List[Tuple[bytes, bytes]], credentials: bytes) -> bool:
    """Whether the request's basic authorization is ``credentials``, compared
    in constant time (the time says nothing about how much matched)."""
    given = b""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"basic":
                try:
                    given = base64.b64decode(token.strip(), validate=True)
                except (binascii.Error, ValueError):
                    given = b""
    return hmac.compare_digest(given, credentials)


def load_credentials(path: str) -> bytes:
    """``user:password`` from the first line of the file at ``path`` (read at
    start: never from the command line, where ``ps`` shows it). ValueError
    (the reason) when it holds no such line; OSError when it cannot be read."""
    with open(path, "rb") as file:
        line = file.readline().rstrip(b"\r\n")
    user, colon, password = line.partition(b":")
    if not colon or not user or not password:
        raise ValueError(f"{path}: expected one line user:password")
    return line

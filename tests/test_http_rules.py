"""tailsrv.http.rules without sockets: requests in, answers out."""

from __future__ import annotations

import base64

import pytest

from tailsrv.http.rules import Reply, Stream, answer, authorized, load_credentials, load_pages
from tailsrv.protocol import Request, make_proof, parse_header

PAGES = load_pages()


def ask(target: bytes, method: bytes = b"GET", headers=(), credentials=None):
    return answer(method, target, list(headers), PAGES, credentials)


@pytest.mark.parametrize("target, request_", [
    (b"/stream", Request(-100, lines=True)),
    (b"/stream?start=0", Request(0)),
    (b"/stream?start=-10l", Request(-10, lines=True)),
    (b"/stream?start=25L&other=1", Request(25, lines=True)),
    (b"/stream?start=+7", Request(7)),
    (b"/stream?start=%2010%20", Request(10)),
])
def test_stream_starts(target, request_):
    assert ask(target) == Stream(request_)


@pytest.mark.parametrize("target, status", [
    (b"/stream?start=", 400), (b"/stream?start=1?", 400), (b"/stream?start=1_0", 400),
    (b"/stream?start=%D9%A1", 400), (b"/stream/", 404), (b"/index.html", 404),
])
def test_refusals(target, status):
    reply = ask(target)
    assert isinstance(reply, Reply) and reply.status == status


def test_pages_are_package_data():
    assert ask(b"/").body.startswith(b"<!doctype html>")
    assert ask(b"/?lines=50") is PAGES["/"]
    assert sum(len(page.body) for page in PAGES.values()) < 32 * 1024  # small


def basic(text: bytes):
    return [(b"authorization", b"Basic " + base64.b64encode(text))]


def test_authorization():
    assert authorized(basic(b"u:p w"), b"u:p w")
    assert not authorized(basic(b"u:p"), b"u:p w")
    assert not authorized([(b"authorization", b"Basic !!!")], b"u:p")
    assert not authorized([(b"authorization", b"Bearer dTpw")], b"u:p")
    assert not authorized([], b"u:p")
    assert ask(b"/", credentials=b"u:p").status == 401
    assert ask(b"/nope", credentials=b"u:p").status == 401  # nothing said before that
    assert ask(b"/", headers=basic(b"u:p"), credentials=b"u:p") is PAGES["/"]


def test_credentials_file(tmp_path):
    path = tmp_path / "auth"
    path.write_bytes(b"user:pa:ss\r\nignored\n")
    assert load_credentials(str(path)) == b"user:pa:ss"
    for bad in (b"", b"user\n", b":pass\n", b"user:\n"):
        path.write_bytes(bad)
        with pytest.raises(ValueError):
            load_credentials(str(path))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("before", [b"\xff\xfe>", b"ab", b"x" * 4096], ids=["3", "2", "4096"])
@pytest.mark.parametrize("padded", [False, True])
def test_before_is_the_tcp_resume_proof(before, padded):
    value = base64.urlsafe_b64encode(before).decode() if padded else b64url(before)
    assert ask(f"/stream?start=5000&before={value}".encode()) == Stream(
        parse_header(b"5000" + make_proof(before).encode()))


@pytest.mark.parametrize("query, reason", [
    ("start=5&before=", b"bad before: expected 1 to 4096 bytes"),
    ("start=5&before=a", b"bad before: expected 1 to 4096 bytes"),
    ("start=5&before=YW%2Bj", b"bad before: expected 1 to 4096 bytes"),
    (f"start=9999&before={b64url(b'x' * 4097)}", b"bad before: expected 1 to 4096 bytes"),
    ("start=2&before=YWJj", b"bad before: a resume needs a byte start"),
    ("start=5l&before=YWJj", b"bad before: a resume needs a byte start"),
    ("start=-5&before=YWJj", b"bad before: a resume needs a byte start"),
    ("before=YWJj", b"bad before: a resume needs a byte start"),
    ("start=5&before=YQ&before=YQ", b"bad before: before given more than once"),
])
def test_bad_before(query, reason):
    reply = ask(f"/stream?{query}".encode())
    assert reply.status == 400 and reply.body.startswith(reason)
    assert reply.body.count(b"\n") == 1


def test_files_and_named_streams():
    from tailsrv.http.rules import Listing
    assert ask(b"/files") == Listing()
    assert ask(b"/files?x=1") == Listing()
    assert ask(b"/files", method=b"POST").status == 405
    assert ask(b"/stream?file=a.log&start=0") == Stream(Request(0), "a.log")
    assert ask(b"/stream?file=a%20b&start=-2l") == Stream(Request(-2, lines=True), "a b")
    assert ask(b"/stream?file=%FF") == Stream(Request(-100, lines=True), "\udcff")


@pytest.mark.parametrize("value", [b"", b"..", b".", b"a%2Fb", b"%2Fetc%2Fpasswd", b"a%00"])
def test_hostile_file_names_are_404(value):
    reply = ask(b"/stream?file=" + value)
    assert isinstance(reply, Reply) and reply.status == 404
    assert reply.body.count(b"\n") == 1
    assert ask(b"/stream?file=a&file=b").status == 404

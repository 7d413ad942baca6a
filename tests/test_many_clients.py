"""The clients against a server of several files: follow(file=...),
list_files, tscat --file / --list, tssync --file / --all; real processes."""

from __future__ import annotations

import signal
import subprocess

import pytest
from conftest import IO_TIMEOUT, append, script, wait_for

from tailsrv.client import follow, list_files

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spaced(logdir):
    """``logdir`` with a name that needs encoding: ``b c.log``."""
    (logdir / "b c.log").write_bytes(b"sea\n")
    return logdir


def test_follow_names_the_file_and_resumes_it(start_server, spaced):
    logdir = spaced
    server = start_server(logdir)
    address = f"127.0.0.1:{server.port}"
    assert list_files(address) == [("a.log", 8), ("b c.log", 4), ("b.log", 4)]
    chunks = follow(address, lines=-1, file="b c.log")
    assert next(chunks) == b"sea\n"
    server.kill()
    append(logdir / "b c.log", b"after restart\n")
    append(logdir / "a.log", b"not this\n")
    server.restart()
    got = b""
    for chunk in chunks:
        got += chunk
        if len(got) >= 14:
            break
    assert got == b"after restart\n"
    server.wait_log("[b c.log] connected: header 4?#4:")


def test_tscat_file_and_list(start_server, spaced, spawn):
    logdir = spaced
    server = start_server(logdir)
    address = f"127.0.0.1:{server.port}"
    listed = subprocess.run([script("tscat"), "--list", address], capture_output=True,
                            timeout=IO_TIMEOUT)
    assert (listed.returncode, listed.stdout) == (0, b"a.log 8\nb%20c.log 4\nb.log 4\n")
    tscat = spawn(["tscat", "--file", "a.log", "--lines", "-1", "--no-reconnect", address])
    server.wait_log("[a.log] connected")
    append(logdir / "a.log", b"three\n")
    assert tscat.stdout.read(10) == b"two\nthree\n"
    unnamed = subprocess.run([script("tscat"), "--no-reconnect", address],
                             capture_output=True, timeout=IO_TIMEOUT)
    assert unnamed.stdout == b""
    server.wait_log("name one")


def test_tssync_file_and_all(start_server, spaced, tmp_path, spawn):
    logdir = spaced
    server = start_server(logdir)
    address = f"127.0.0.1:{server.port}"
    one = tmp_path / "one.log"
    spawn(["tssync", "--file", "a.log", address, str(one)])
    mirrors = tmp_path / "mirrors"
    every = spawn(["tssync", "--all", address, str(mirrors)])
    wait_for(lambda: one.exists() and one.read_bytes() == b"one\ntwo\n")
    (logdir / "later.log").write_bytes(b"late\n")
    for n in range(3):
        append(logdir / "a.log", b"%d\n" % n)
    files = ("a.log", "b c.log", "b.log", "later.log")

    def mirrored():
        return all((mirrors / name).exists() and
                   (mirrors / name).read_bytes() == (logdir / name).read_bytes()
                   for name in files)
    wait_for(mirrored, timeout=3 * IO_TIMEOUT)
    assert one.read_bytes() == (logdir / "a.log").read_bytes()
    every.send_signal(signal.SIGTERM)
    assert every.wait(IO_TIMEOUT) == 0


def test_tssync_all_says_plainly_when_a_file_is_no_longer_served(start_server, spaced, tmp_path,
                                                                 spawn):
    """A file deleted from the directory is no longer served: its mirror's
    reconnections say that the server does not serve it now, not that the
    server may be an original tailsrv (which takes no names at all)."""
    logdir = spaced
    server = start_server(logdir)
    errors = tmp_path / "tssync.err"
    with open(errors, "wb") as sink:
        every = spawn(["tssync", "--all", f"127.0.0.1:{server.port}", str(tmp_path / "m")],
                      stderr=sink)
    wait_for(lambda: (tmp_path / "m" / "b.log").exists() and
             (tmp_path / "m" / "b.log").read_bytes() == (logdir / "b.log").read_bytes())
    (logdir / "b.log").unlink()
    wait_for(lambda: b"does not serve b.log now" in errors.read_bytes() and
             server.log.count("rejected: no file named 'b.log'") >= 3, timeout=3 * IO_TIMEOUT)
    every.send_signal(signal.SIGTERM)
    assert every.wait(IO_TIMEOUT) == 0
    err = errors.read_bytes()
    assert b"original tailsrv" not in err and b"Traceback" not in err, err
    assert err.count(b"does not serve b.log now") == 1, err

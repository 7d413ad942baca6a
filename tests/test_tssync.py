"""tssync, the console script: a mirror that resumes byte-exact, one mirror per
file, and a two-tier chain (server, tssync, second server, client)."""

import os
import signal
import subprocess

import pytest

from conftest import IO_TIMEOUT, append, script, wait_for
from tailsrv.client import follow

pytestmark = pytest.mark.timeout(60)


def size_is(path, size):
    return lambda: path.exists() and path.stat().st_size == size


def test_help_and_usage():
    help = subprocess.run([script("tssync"), "--help"], capture_output=True, timeout=IO_TIMEOUT)
    assert help.returncode == 0 and b"flock" in help.stdout and b"Exit status" in help.stdout
    bad = subprocess.run([script("tssync"), "nowhere", "file"], capture_output=True,
                         timeout=IO_TIMEOUT)
    assert bad.returncode == 2 and b"expected HOST:PORT" in bad.stderr


def test_unwritable_file_exits_1(tmp_path):
    result = subprocess.run([script("tssync"), "127.0.0.1:9", str(tmp_path / "no" / "m.log")],
                            capture_output=True, timeout=IO_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.decode().strip().endswith("m.log: No such file or directory")


def test_resumes_from_the_file_length(tmp_path, start_server, logfile, spawn):
    server = start_server(logfile)
    mirror = tmp_path / "mirror.log"
    mirror.write_bytes(b"hello\n")  # as if an earlier tssync had got that far
    tssync = spawn(["tssync", f"127.0.0.1:{server.port}", str(mirror)])
    wait_for(size_is(mirror, 12))
    tssync.send_signal(signal.SIGTERM)
    assert tssync.wait(IO_TIMEOUT) == 0
    append(logfile, b"while stopped\n")
    tssync = spawn(["tssync", f"127.0.0.1:{server.port}", str(mirror)])
    wait_for(size_is(mirror, logfile.stat().st_size))
    assert mirror.read_bytes() == logfile.read_bytes()
    server.wait_log("header 12?#12:")
    assert server.log.count("header 6?#6:") == 1 and server.log.count("header 12?#12:") == 1


def test_a_second_tssync_on_the_same_file_exits_1(tmp_path, start_server, logfile, spawn):
    server = start_server(logfile)
    mirror = tmp_path / "mirror.log"
    first = spawn(["tssync", f"127.0.0.1:{server.port}", str(mirror)])
    wait_for(size_is(mirror, 12))
    second = subprocess.run([script("tssync"), f"127.0.0.1:{server.port}", str(mirror)],
                            capture_output=True, timeout=IO_TIMEOUT)
    assert second.returncode == 1
    assert b"is locked: another tssync is mirroring into it" in second.stderr
    assert first.poll() is None and mirror.read_bytes() == b"hello\nworld\n"


def test_resumes_byte_exact_after_the_server_is_killed(tmp_path, start_server, spawn):
    original = tmp_path / "original.bin"
    original.write_bytes(os.urandom(8 << 20))
    server = start_server(original)
    mirror = tmp_path / "mirror.bin"
    tssync = spawn(["tssync", f"127.0.0.1:{server.port}", str(mirror)])
    wait_for(lambda: mirror.exists() and mirror.stat().st_size > 0)
    server.kill()  # mid-stream, as far as the kernel had got
    append(original, os.urandom(1000))
    server.restart()
    wait_for(size_is(mirror, original.stat().st_size), timeout=3 * IO_TIMEOUT)
    assert mirror.read_bytes() == original.read_bytes()
    assert tssync.poll() is None


def test_two_tier_chain_is_byte_exact(tmp_path, start_server, spawn):
    """original -> tailsrv A -> tssync -> mirror -> tailsrv B -> client."""
    original, mirror = tmp_path / "original.bin", tmp_path / "mirror.bin"
    original.write_bytes(os.urandom(3 << 20))
    tier_a = start_server(original)
    tier_b = start_server(mirror)  # the mirror does not exist yet: B waits for it
    spawn(["tssync", f"127.0.0.1:{tier_a.port}", str(mirror)])
    chunks = follow(f"127.0.0.1:{tier_b.port}")
    received = b""
    for round in range(3):
        append(original, os.urandom(100_000) + b"round %d\n" % round)
        while len(received) < original.stat().st_size:
            received += next(chunks)
        assert received == original.read_bytes()
    assert mirror.read_bytes() == original.read_bytes()

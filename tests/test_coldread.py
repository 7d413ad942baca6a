"""Cold reads off the event loop (tailsrv.server.coldread): a client catching up
through pages that are not in memory must not hold up the caught-up followers.

The file is served through scripts/slowfs (a FUSE passthrough) whose reads of
the old part of the file are held for as long as a gate file says: the
catch-up's disk read cannot finish until the test lets it, so the test asserts
on order alone. Followers' appends arrive while the catch-up's read is held;
then the catch-up gets every byte. A server that reads cold pages in its loop
never delivers those appends (the test fails at its bounded wait).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, connect, read_exactly, wait_for

SLOWFS = Path(__file__).resolve().parent.parent / "scripts" / "slowfs"
OLD = 8 * 1024 * 1024
RECORD = b"record %04d\n"


def fuse_missing() -> str:
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as error:
        return f"mfusepy: {error}"
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        return "no /dev/fuse or fusermount3"
    return ""


@pytest.fixture
def slow_mount(tmp_path: Path):
    """(mounted dir, source dir, gate file): a slowfs of tmp_path/src, reads
    below the gate's offset held while the gate exists."""
    missing = fuse_missing()
    if missing and not os.environ.get("CI"):
        pytest.skip(missing)
    source, mount, gate = tmp_path / "src", tmp_path / "mnt", tmp_path / "gate"
    source.mkdir()
    mount.mkdir()
    log = open(tmp_path / "slowfs.log", "wb")
    proc = subprocess.Popen([sys.executable, str(SLOWFS), str(source), str(mount),
                             "--delay-ms", "0", "--gate", str(gate)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_for(lambda: os.path.ismount(mount) or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "slowfs.log").read_text()
        yield mount, source, gate
    finally:
        gate.unlink(missing_ok=True)
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False)
        try:
            proc.wait(IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(IO_TIMEOUT)
        log.close()


def test_followers_keep_streaming_while_a_catch_up_waits_for_the_disk(slow_mount, start_server):
    mount, source, gate = slow_mount
    old = bytes(range(256)) * (OLD // 256)
    (source / "app.log").write_bytes(old)
    gate.write_text(str(OLD))  # reads of the old part are held from now on
    server = start_server(mount / "app.log")
    with connect(server.port, b"%d\n" % OLD) as follower, \
            connect(server.port, b"0\n") as catch_up:
        records = b""
        with open(mount / "app.log", "ab", buffering=0) as writer:
            for number in range(5):
                record = RECORD % number
                writer.write(record)
                assert read_exactly(follower, len(record)) == record
                records += record
            # Every append arrived while the catch-up's first read is held.
            with pytest.raises(BlockingIOError):
                catch_up.recv(1, socket.MSG_DONTWAIT)
            gate.unlink()
            assert read_exactly(catch_up, OLD + len(records)) == old + records
            writer.write(RECORD % 5)
            assert read_exactly(follower, len(RECORD % 5)) == RECORD % 5
            assert read_exactly(catch_up, len(RECORD % 5)) == RECORD % 5

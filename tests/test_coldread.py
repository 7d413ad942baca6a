"""Cold reads off the event loop (tailsrv.server.coldread): a client catching up
through pages that are not in memory must not hold up the caught-up followers.

The file is served through scripts/slowfs (a FUSE passthrough) whose every
read waits `DELAY_MS`: the catch-up's 8 MiB take seconds to come off that
"disk" (64 reads of 128 KiB). The followers' appends must arrive, one after the
other, before the catch-up has its first 8 MiB: a server that reads cold pages
in its loop makes each append wait behind a whole chunk's disk reads.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, connect, free_port, read_exactly, wait_for

SLOWFS = Path(__file__).resolve().parent.parent / "scripts" / "slowfs"
OLD = 8 * 1024 * 1024
RECORD = b"record %04d\n"
#: Each read of the slow disk waits this long.
DELAY_MS = 100


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
    """(mounted dir, source dir): a slowfs of tmp_path/src, every read slow;
    while tmp_path/gate exists, reads below the offset it holds wait."""
    missing = fuse_missing()
    if missing and not os.environ.get("CI"):
        pytest.skip(missing)
    source, mount = tmp_path / "src", tmp_path / "mnt"
    source.mkdir()
    mount.mkdir()
    log = open(tmp_path / "slowfs.log", "wb")
    proc = subprocess.Popen([sys.executable, str(SLOWFS), str(source), str(mount),
                             "--delay-ms", str(DELAY_MS), "--gate", str(tmp_path / "gate")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_for(lambda: os.path.ismount(mount) or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "slowfs.log").read_text()
        yield mount, source
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False)
        try:
            proc.wait(IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(IO_TIMEOUT)
        log.close()


def test_followers_keep_streaming_while_a_catch_up_waits_for_the_disk(slow_mount, start_server):
    mount, source = slow_mount
    old = bytes(range(256)) * (OLD // 256)
    (source / "app.log").write_bytes(old)
    server = start_server(mount / "app.log")
    with connect(server.port, b"%d\n" % OLD) as follower, \
            connect(server.port, b"0\n") as catch_up:
        caught_up = threading.Event()
        got = []
        reader = threading.Thread(target=lambda: (got.append(read_exactly(catch_up, OLD)),
                                                  caught_up.set()), daemon=True)
        reader.start()
        with open(mount / "app.log", "ab", buffering=0) as writer:
            records = b""
            for number in range(5):
                record = RECORD % number
                writer.write(record)
                assert read_exactly(follower, len(record)) == record
                records += record
            # Every append arrived while the catch-up was still in its reads.
            assert not caught_up.is_set()
            reader.join(IO_TIMEOUT * 3)
            assert got == [old]
            assert read_exactly(catch_up, len(records)) == records


def test_cached_tells_cold_pages_from_warm_ones(tmp_path: Path):
    """On the disk: 0 for a dropped range, all of it once read; on tmpfs
    (cannot tell, memory anyway) always all of it."""
    from tailsrv.server import coldread

    path = tmp_path / "cold"
    path.write_bytes(b"x" * (2 * 1024 * 1024))
    fd = os.open(path, os.O_RDONLY)
    try:
        if coldread._filesystem(os.fstat(fd).st_dev) in coldread.MEMORY_FILESYSTEMS:
            pytest.skip("tmp_path is in memory")
        os.fsync(fd)
        # Again while pages stay (on a CPU's list of new pages, or read again
        # by a probe: a probe that misses starts the kernel's readahead there).
        for _ in range(50):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            warm = coldread.cached(fd, 0, 1024 * 1024)
            if not warm:
                break
            time.sleep(0.05)
        assert warm == 0
        os.pread(fd, 1024 * 1024, 0)
        assert coldread.cached(fd, 0, 1024 * 1024) == 1024 * 1024
    finally:
        os.close(fd)
    with open("/dev/shm/tailsrv-test-cold-%d" % os.getpid(), "w+b") as shm:
        try:
            shm.write(b"y" * 4096)
            shm.flush()
            assert coldread.cached(shm.fileno(), 0, 4096) == 4096
        finally:
            os.unlink(shm.name)


def test_an_append_to_a_slow_file_never_holds_up_the_loop(slow_mount, start_server, tmp_path):
    """A file on a slow filesystem is read by threads only: while every read
    of it is held (a network filesystem that stopped answering), an append's
    news (whose bytes the watch must read) leaves the server answering an HTTP
    request, as does news of its size alone (an attribute changed); the
    follower gets the append once reads are let through."""
    from test_http import Client

    mount, source = slow_mount
    (source / "app.log").write_bytes(b"old\n")
    port = free_port()
    server = start_server(mount / "app.log", "--http", f"127.0.0.1:{port}")
    gate = tmp_path / "gate"
    with connect(server.port, b"4\n") as follower:
        gate.write_text(str(1 << 40))  # every read waits
        try:
            with open(mount / "app.log", "ab", buffering=0) as writer:
                writer.write(b"new\n")
            os.utime(mount / "app.log")  # news the watch does not read: only the size
            page = Client(port).get("/")
            assert page.status_code == 200
        finally:
            gate.unlink()
        assert read_exactly(follower, 4) == b"new\n"


def test_a_catch_up_through_dropped_pages_on_the_disk_gets_every_byte(start_server, tmp_path):
    """On the disk (not FUSE): a chunk not wholly in the page cache goes by a
    thread's sendfile; the catch-up client gets the file exactly, and a
    follower its append."""
    from tailsrv.server import coldread

    path = tmp_path / "app.log"
    old = os.urandom(12 * 1024 * 1024)
    path.write_bytes(old)
    with open(path, "rb") as cold:
        if coldread._filesystem(os.fstat(cold.fileno()).st_dev) in coldread.MEMORY_FILESYSTEMS:
            pytest.skip("tmp_path is in memory")
        os.fsync(cold.fileno())
        os.posix_fadvise(cold.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    server = start_server(path)
    with connect(server.port, b"%d\n" % len(old)) as follower, \
            connect(server.port, b"0\n") as catch_up:
        assert read_exactly(catch_up, len(old)) == old
        with open(path, "ab") as writer:
            writer.write(b"new\n")
        assert read_exactly(follower, 4) == b"new\n"
        assert read_exactly(catch_up, 4) == b"new\n"

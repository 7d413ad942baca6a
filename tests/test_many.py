"""A server of several files over TCP, end to end: a real tailsrv process
serving a real directory (or several PATHs), real inotify, real sockets;
named headers, the list, files coming and going, and hostile names."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
from conftest import (IO_TIMEOUT, append, connect, read_exactly, read_until_closed, script,
                      wait_for)

from tailsrv.protocol import digest


def listing(port: int) -> bytes:
    with connect(port, b"*\n") as sock:
        return read_until_closed(sock)


def opened(server, path) -> bool:
    return any(d.target == str(path) for d in server.descriptors().values())


def test_list_then_close(start_server, logdir):
    (logdir / "with space.log").write_bytes(b"12345")
    server = start_server(logdir)
    assert listing(server.port) == b"a.log 8\nb.log 4\nwith%20space.log 5\n"
    server.wait_log("listed the files")


@pytest.mark.parametrize("header, expected", [
    (b"a.log 0\n", b"one\ntwo\n"), (b"a.log -4\n", b"two\n"), (b"a.log -1l\n", b"two\n"),
    (b"a.log 1l\n", b"two\n"), (b"a.log -1l?\n", b"4\ntwo\n"), (b"  a.log 4  \n", b"two\n"),
    (b"a.log 4#4:" + digest(b"one\n") + b"\n", b"4\ntwo\n"),
])
def test_every_header_form_after_the_name(start_server, logdir, header, expected):
    server = start_server(logdir)
    with connect(server.port, header) as sock:
        assert read_exactly(sock, len(expected)) == expected
        append(logdir / "b.log", b"not for a\n")
        append(logdir / "a.log", b"three\n")
        assert read_exactly(sock, 6) == b"three\n"


def test_each_client_gets_its_own_file(start_server, logdir):
    server = start_server(logdir)
    with connect(server.port, b"a.log -1l\n") as a, connect(server.port, b"b.log 0\n") as b:
        assert read_exactly(a, 4) == b"two\n"
        assert read_exactly(b, 4) == b"bee\n"
        for n in range(20):
            append(logdir / ("a.log" if n % 2 else "b.log"), b"%d\n" % n)
        odd = b"".join(b"%d\n" % n for n in range(1, 20, 2))
        even = b"".join(b"%d\n" % n for n in range(0, 20, 2))
        assert read_exactly(a, len(odd)) == odd
        assert read_exactly(b, len(even)) == even


def test_a_plain_header_must_name_a_file_among_several(start_server, logdir):
    server = start_server(logdir)
    with connect(server.port, b"0\n") as sock:
        assert read_until_closed(sock) == b""
    assert "2 files are served: name one" in server.wait_log("name one")


def test_a_plain_header_means_the_one_file_of_a_set_of_one(start_server, tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.log").write_bytes(b"x\n")
    server = start_server(tmp_path / "only")
    with connect(server.port, b"0\n") as sock:
        assert read_exactly(sock, 2) == b"x\n"


def test_several_paths(start_server, tmp_path, logdir):
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.log").write_bytes(b"sea\n")
    server = start_server(other / "c.log", str(logdir / "a.log"))
    assert listing(server.port) == b"a.log 8\nc.log 4\n"
    with connect(server.port, b"c.log 0\n") as sock:
        assert read_exactly(sock, 4) == b"sea\n"
        append(other / "c.log", b"more\n")
        assert read_exactly(sock, 5) == b"more\n"
    with connect(server.port, b"b.log 0\n") as sock:  # in a's directory, not named
        assert read_until_closed(sock) == b""


def test_same_base_name_twice_is_a_usage_error(tmp_path, logdir):
    (tmp_path / "a.log").write_bytes(b"")
    result = subprocess.run([script("tailsrv"), "-p", "1", str(tmp_path / "a.log"),
                             str(logdir / "a.log")], capture_output=True, text=True,
                            timeout=IO_TIMEOUT)
    assert result.returncode == 2
    assert "two files named 'a.log'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_created_later_is_served_at_once(start_server, logdir):
    server = start_server(logdir)
    (logdir / "new.log").write_bytes(b"fresh\n")
    wait_for(lambda: b"new.log 6\n" in listing(server.port))
    with connect(server.port, b"new.log 0\n") as sock:
        assert read_exactly(sock, 6) == b"fresh\n"
    assert "now serving" in server.wait_log("new.log")


def test_renamed_in_is_served_moved_out_or_deleted_ends_its_clients(start_server, logdir,
                                                                   tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_bytes(b"came in\n")
    server = start_server(logdir)
    os.rename(outside, logdir / "in.log")
    wait_for(lambda: b"in.log 8\n" in listing(server.port))
    with connect(server.port, b"in.log 0\n") as moved, \
            connect(server.port, b"b.log 0\n") as deleted, \
            connect(server.port, b"a.log 0\n") as stays:
        assert read_exactly(moved, 8) == b"came in\n"
        assert read_exactly(deleted, 4) == b"bee\n"
        assert read_exactly(stays, 8) == b"one\ntwo\n"
        os.rename(logdir / "in.log", tmp_path / "out.log")
        (logdir / "b.log").unlink()
        assert read_until_closed(moved) == b""
        assert read_until_closed(deleted) == b""
        append(logdir / "a.log", b"on\n")
        assert read_exactly(stays, 3) == b"on\n"
    assert listing(server.port) == b"a.log 11\n"
    server.wait_log("b.log is no longer served: it was deleted")
    assert server.proc.poll() is None


def test_a_file_is_open_only_while_it_has_clients(start_server, logdir):
    server = start_server(logdir)
    assert not opened(server, logdir / "a.log")
    with connect(server.port, b"a.log 0\n") as sock:
        read_exactly(sock, 8)
        assert opened(server, logdir / "a.log")
        assert not opened(server, logdir / "b.log")
    # A closed client is noticed when the next append is refused (the server
    # cannot tell a half-closed client from a gone one before that).
    wait_for(lambda: append(logdir / "a.log", b"x\n") or not opened(server, logdir / "a.log"),
             interval=0.2)
    server.wait_log("[a.log] disconnected")


def test_glob_and_hidden_files(start_server, logdir):
    (logdir / "notes.txt").write_bytes(b"n\n")
    (logdir / ".hidden.log").write_bytes(b"h\n")
    assert listing(start_server(logdir).port) == b"a.log 8\nb.log 4\nnotes.txt 2\n"
    assert listing(start_server(logdir, "--glob", "*.log").port) == b"a.log 8\nb.log 4\n"
    assert listing(start_server(logdir, "--glob", ".*").port) == b".hidden.log 2\n"
    server = start_server(logdir, "--glob", "*.txt")
    with connect(server.port, b"a.log 0\n") as sock:
        assert read_until_closed(sock) == b""
    server.wait_log("no file named 'a.log' is served")


@pytest.mark.parametrize("header", [
    b"..%2Fb.log 0\n", b".. 0\n", b". 0\n", b"%2Fetc%2Fpasswd 0\n", b"a.log%00 0\n",
    b"%2E%2E 0\n", b"nope.log 0\n", b"a.log/ 0\n", b"sub 0\n", b"%zz 0\n", b"x" * 2000 + b"\n",
])
def test_hostile_names_get_nothing(start_server, logdir, header):
    (logdir / "sub").mkdir()
    (logdir / "sub" / "b.log").write_bytes(b"inner\n")
    server = start_server(logdir)
    with connect(server.port, header) as sock:
        assert read_until_closed(sock) == b""
    assert "rejected" in server.wait_log("rejected")


def test_a_fifo_is_skipped_and_blocks_nothing(start_server, logdir):
    os.mkfifo(logdir / "pipe")
    server = start_server(logdir)
    assert listing(server.port) == b"a.log 8\nb.log 4\n"
    os.mkfifo(logdir / "pipe2")
    with connect(server.port, b"pipe2 0\n") as sock:
        assert read_until_closed(sock) == b""
    with connect(server.port, b"a.log 0\n") as sock:
        assert read_exactly(sock, 8) == b"one\ntwo\n"


def test_symlinks_out_of_the_directory(start_server, logdir, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret\n")
    os.symlink(secret, logdir / "out.log")
    os.symlink("a.log", logdir / "in.log")
    server = start_server(logdir)
    assert listing(server.port) == b"a.log 8\nb.log 4\nin.log 8\n"
    with connect(server.port, b"out.log 0\n") as sock:
        assert read_until_closed(sock) == b""
    with connect(server.port, b"in.log 0\n") as sock:
        assert read_exactly(sock, 8) == b"one\ntwo\n"
    assert "out.log: a symbolic link out of the directory" in server.log
    followed = start_server(logdir, "--follow-symlinks")
    with connect(followed.port, b"out.log 0\n") as sock:
        assert read_exactly(sock, 7) == b"secret\n"


def test_a_symlink_swapped_in_after_the_check_is_refused(start_server, logdir, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret\n")
    server = start_server(logdir)
    (logdir / "b.log").unlink()
    os.symlink(secret, logdir / "b.log")  # CREATE: checked, refused
    with connect(server.port, b"b.log 0\n") as sock:
        assert read_until_closed(sock) == b""


def test_an_unreadable_file_is_not_served_and_said_once(start_server):
    directory = tempfile.mkdtemp(prefix="tailsrv-unreadable-")
    try:
        os.chmod(directory, 0o755)
        for name, mode in (("open.log", 0o644), ("closed.log", 0o600)):
            path = os.path.join(directory, name)
            with open(path, "wb") as f:
                f.write(b"data\n")
            os.chmod(path, mode)
        # As root, without the capabilities that bypass file permissions.
        os.chown(os.path.join(directory, "closed.log"), 65534, 65534)
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] \
            if os.geteuid() == 0 else []
        server = start_server(directory, prefix=prefix)
        assert listing(server.port) == b"open.log 5\n"
        with connect(server.port, b"closed.log 0\n") as sock:
            assert read_until_closed(sock) == b""
        log = server.wait_log("no file named 'closed.log'")
        assert log.count("not serving") == 1
        assert "closed.log: Permission denied" in log
    finally:
        shutil.rmtree(directory)


def rotating(start_server, logdir):
    """A server with --follow-name, and a client each of a.log and b.log,
    caught up."""
    server = start_server(logdir, "--follow-name", "--rotation-grace", "0.5")
    a, b = connect(server.port, b"a.log 0\n"), connect(server.port, b"b.log 0\n")
    assert read_exactly(a, 8) == b"one\ntwo\n"
    assert read_exactly(b, 4) == b"bee\n"
    return server, a, b


def test_follow_name_per_file(start_server, logdir):
    server, old, b = rotating(start_server, logdir)
    with old, b:
        os.rename(logdir / "a.log", logdir / "a.log.1")
        append(logdir / "a.log.1", b"late\n")
        (logdir / "a.log").write_bytes(b"new\n")
        assert read_exactly(old, 5) == b"late\n"
        assert read_until_closed(old) == b""  # all of the old file, then closed
        with connect(server.port, b"a.log 0\n") as new:
            assert read_exactly(new, 4) == b"new\n"
        append(logdir / "b.log", b"b goes on\n")
        assert read_exactly(b, 10) == b"b goes on\n"
    # Every client gone (noticed at the next append), the old file done with
    # (rotation.KEEP, 10 s, after its last client): both files closed.
    wait_for(lambda: append(logdir / "a.log", b"x\n") or not (
        opened(server, logdir / "a.log") or opened(server, logdir / "a.log.1")),
        timeout=30, interval=0.5)


@pytest.mark.parametrize("follow_name", [False, True])
def test_a_file_renamed_over_a_served_one(start_server, logdir, follow_name):
    server = start_server(logdir, *(["--follow-name", "--rotation-grace", "0.5"]
                                    if follow_name else []))
    with connect(server.port, b"a.log 0\n") as old:
        assert read_exactly(old, 8) == b"one\ntwo\n"
        (logdir / "a.tmp").write_bytes(b"replacement\n")
        os.rename(logdir / "a.tmp", logdir / "a.log")
        assert read_until_closed(old) == b""
    with connect(server.port, b"a.log 0\n") as new:
        assert read_exactly(new, 12) == b"replacement\n"


def test_ten_thousand_files_one_process_few_descriptors(start_server, tmp_path):
    directory = tmp_path / "many"
    directory.mkdir()
    for n in range(10_000):
        (directory / f"f{n:05d}.log").write_bytes(b"")
    server = start_server(directory)
    lines = listing(server.port).splitlines()
    assert len(lines) == 10_000 and lines[0] == b"f00000.log 0"
    assert server.open_fds() < 50  # no file is open: none has clients
    with connect(server.port, b"f09999.log 0\n") as sock:
        append(directory / "f09999.log", b"last\n")
        append(directory / "f00000.log", b"first\n")
        assert read_exactly(sock, 5) == b"last\n"


@pytest.mark.parametrize("args, message", [
    (["--glob", "*.log", "{a}"], "--glob and --follow-symlinks need PATH to be a directory"),
    (["--follow-symlinks", "{a}", "{b}"], "need PATH to be a directory"),
    (["{dir}", "{a}"], "not a directory among several PATHs"),
])
def test_usage_errors_of_several_files(logdir, args, message):
    paths = {"a": str(logdir / "a.log"), "b": str(logdir / "b.log"), "dir": str(logdir)}
    result = subprocess.run([script("tailsrv"), "-p", "1", *(a.format(**paths) for a in args)],
                            capture_output=True, text=True, timeout=IO_TIMEOUT)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_the_directory_gone_stops_the_server_with_status_1(start_server, tmp_path):
    directory = tmp_path / "gone"
    directory.mkdir()
    (directory / "x.log").write_bytes(b"x\n")
    server = start_server(directory)
    with connect(server.port, b"x.log 0\n") as sock:
        assert read_exactly(sock, 2) == b"x\n"
        shutil.rmtree(directory)
        assert read_until_closed(sock) == b""
    assert server.proc.wait(IO_TIMEOUT) == 1
    assert "was deleted or moved" in server.log and "Traceback" not in server.log


def test_follow_name_onto_a_fifo_ends_that_file_only(start_server, logdir):
    server, a, b = rotating(start_server, logdir)
    with a, b:
        os.rename(logdir / "a.log", logdir / "a.log.1")
        os.mkfifo(logdir / "a.log")
        assert read_until_closed(a) == b""
        append(logdir / "b.log", b"on\n")
        assert read_exactly(b, 3) == b"on\n"
    # Either the new watch found the FIFO at once ("cannot follow the new ...")
    # or it waited for the name and found it then ("still waiting for a regular file").
    server.wait_log("a.log is not a regular file")
    assert server.proc.poll() is None and "Traceback" not in server.log


def test_an_unreadable_path_of_several_is_said_once(start_server, tmp_path, logdir):
    os.mkfifo(tmp_path / "fifo.log")
    server = start_server(logdir / "a.log", str(tmp_path / "fifo.log"))
    for _ in range(3):
        with connect(server.port, b"fifo.log 0\n") as sock:
            assert read_until_closed(sock) == b""
    with connect(server.port, b"a.log 0\n") as sock:
        assert read_exactly(sock, 8) == b"one\ntwo\n"
    rejected = "rejected: no file named 'fifo.log' is served"
    wait_for(lambda: server.log.count(rejected) >= 3)  # the lines of one turn come together
    log = server.wait_log("fifo.log is not a regular file")
    assert log.count("not serving") == 1
    assert log.count(rejected) == 3

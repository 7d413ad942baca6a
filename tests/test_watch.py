"""The watcher's inotify descriptors, as the kernel sees them in a running server."""

import os


def test_inotify_is_non_blocking_and_every_descriptor_close_on_exec(logfile, start_server):
    """The one ``read()`` per append must never block the hub, and a program
    the embedding process starts inherits none of the server's descriptors.
    There are two: growth, and what else happens to the file (watch.py)."""
    fds = start_server(logfile).descriptors()
    inotify = [d for d in fds.values() if d.target == "anon_inode:inotify"]
    assert len(inotify) == 2
    assert all(d.flags & os.O_NONBLOCK for d in inotify)
    assert [d.target for fd, d in fds.items() if fd > 2 and not d.flags & os.O_CLOEXEC] == []


def test_listeners_get_each_append_read_once(tmp_path):
    """A short append reaches the listeners as the bytes appended, read into
    one buffer kept for it (so each view must be exactly this append's, never
    a longer one's rest); a long one as a size alone (sent by sendfile)."""
    import gevent

    from tailsrv.server.watch import TAIL, FileWatch

    path = tmp_path / "log"
    path.write_bytes(b"start\n")
    watch = FileWatch(str(path))
    heard = []
    watch.subscribe(lambda size, shrank, tail: heard.append(
        (size, shrank, None if tail is None else bytes(tail))))
    watch.start()
    try:
        # The loop takes the news start-up queued (the directory's watch
        # removed: IN_IGNORED, a look at the size) before the first append.
        gevent.sleep(0.1)
        appends = [b"a" * 100 + b"\n", b"b\n", b"c" * (TAIL + 10), b"d" * 5]
        size = 6
        for data in appends:
            with open(path, "ab") as f:
                f.write(data)
            size += len(data)
            deadline = 100  # 10 s
            while watch.size != size and deadline:
                gevent.sleep(0.1)
                deadline -= 1
            assert watch.size == size
        assert heard == [(6, False, None),  # opened: its size
                         (107, False, b"a" * 100 + b"\n"), (109, False, b"b\n"),
                         (109 + TAIL + 10, False, None), (114 + TAIL + 10, False, b"d" * 5)]
    finally:
        watch.close()

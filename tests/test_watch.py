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

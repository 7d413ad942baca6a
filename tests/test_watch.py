"""The watcher's inotify descriptor, as the kernel sees it in a running server."""

import os


def test_inotify_is_non_blocking_and_every_descriptor_close_on_exec(logfile, start_server):
    """Its one ``read()`` per append must never block the hub, and a program
    the embedding process starts inherits none of the server's descriptors."""
    fds = start_server(logfile).descriptors()
    [inotify] = [d for d in fds.values() if d.target == "anon_inode:inotify"]
    assert inotify.flags & os.O_NONBLOCK
    assert [d.target for fd, d in fds.items() if fd > 2 and not d.flags & os.O_CLOEXEC] == []

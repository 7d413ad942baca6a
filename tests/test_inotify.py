"""tailsrv.inotify against the real kernel interface, and its event parser."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from tailsrv.inotify import (ATTRIB, CREATE, MODIFY, MOVE_SELF, Event, INotify,
                             parse_events)


@pytest.fixture
def inotify():
    watcher = INotify()
    yield watcher
    watcher.close()


def test_nothing_to_read_is_no_events(inotify):
    assert inotify.read(4096) == []


def test_growth_of_a_watched_file(inotify, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    wd = inotify.add_watch(str(path), MODIFY | ATTRIB)
    with open(path, "ab") as out:
        out.write(b"x")
    events = inotify.read(4096)
    assert events and all(e.wd == wd and e.mask & MODIFY for e in events)
    assert inotify.read(4096) == []


def test_a_file_created_in_a_watched_directory_is_named(inotify, tmp_path):
    inotify.add_watch(str(tmp_path), CREATE)
    (tmp_path / "new.log").write_bytes(b"")
    assert [(e.mask & CREATE, e.name) for e in inotify.read(4096)] == [(CREATE, "new.log")]


def test_rm_watch_stops_events(inotify, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    wd = inotify.add_watch(str(path), MODIFY)
    inotify.rm_watch(wd)
    inotify.read(4096)  # the IN_IGNORED the removal queues
    with open(path, "ab") as out:
        out.write(b"x")
    assert inotify.read(4096) == []


def test_errors_are_oserrors_with_errno(inotify, tmp_path):
    with pytest.raises(OSError) as missing:
        inotify.add_watch(str(tmp_path / "absent"), MODIFY)
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(OSError) as bad:
        inotify.rm_watch(12345)
    assert bad.value.errno == errno.EINVAL


def test_descriptor_is_non_blocking_and_close_on_exec(inotify):
    assert not os.get_blocking(inotify.fd)
    assert not os.get_inheritable(inotify.fd)


def test_parse_events_splits_names_and_padding():
    def raw(wd, mask, name=b""):
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded

    data = raw(1, MODIFY) + raw(2, CREATE, b"app.log") + raw(1, MOVE_SELF)
    assert parse_events(data) == [Event(1, MODIFY, 0, ""), Event(2, CREATE, 0, "app.log"),
                                  Event(1, MOVE_SELF, 0, "")]

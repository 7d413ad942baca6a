"""tailsrv.server.catalog's rules without a server: the glob as a shell takes
it, base names that must differ, and what may enter a directory's set."""

from __future__ import annotations

import os

import pytest

from tailsrv.server.catalog import Catalog


@pytest.mark.parametrize("glob, name, matches", [
    ("*", "app.log", True), ("*", ".hidden", False), (".*", ".hidden", True),
    ("*.log", "app.log", True), ("*.log", "app.log.1", False), ("*.log*", "app.log.1", True),
    ("?.log", "a.log", True), ("[ab].log", "c.log", False), ("*", "a b\nc", True),
])
def test_glob_as_a_shell_matches(tmp_path, glob, name, matches):
    assert Catalog([str(tmp_path)], glob)._matches(name) is matches


def test_base_names_must_differ():
    assert Catalog.duplicates(["/a/x.log", "/b/y.log"]) == []
    assert Catalog.duplicates(["/a/x.log", "/b/x.log", "x.log", "/c/y"]) == ["x.log"]


def test_what_may_enter_the_set(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "fifo")
    os.symlink("file", tmp_path / "inside")
    os.symlink("/etc/hostname", tmp_path / "outside")
    os.symlink("nowhere", tmp_path / "dangling")
    catalog = Catalog([str(tmp_path)])
    why = {name: catalog._unservable(str(tmp_path / name)) for name in os.listdir(tmp_path)}
    assert why == {"file": None, "inside": None, "sub": "", "fifo": "", "dangling": "",
                   "outside": "a symbolic link out of the directory (see --follow-symlinks)"}
    assert Catalog([str(tmp_path)], follow_symlinks=True)._unservable(
        str(tmp_path / "outside")) is None

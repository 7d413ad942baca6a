"""The served set of a server of several files: which names may be read, and
one inotify descriptor that hears about all of them.

The set is either the files named on the command line (fixed: a missing one
is waited for, as a single file is) or the regular files of one directory
that match a glob, kept up to date as files are created, renamed in or out,
and deleted. A name outside the set is never opened. In a directory, a name
is served only when it is a regular file (a FIFO, socket or device is never
opened: opening a FIFO blocks), readable (an unreadable one is logged once,
with the reason), and, unless ``follow_symlinks``, not a symbolic link leading
out of the directory (checked again on the descriptor itself when it is
opened, so a link swapped in later cannot lead out either).

One inotify watch per directory reports every file's growth and fate by name
(a watch per file would hit ``max_user_watches`` at ten thousand files, and a
descriptor per file ``max_user_instances``). An idle file costs its name in a
dict: it is opened only while it has clients (`SharedWatch`, one per open
file, fed by the catalog's dispatch). A file that loses its name while it is
still served (``--follow-name``, ``--linger-after-file-is-gone``) gets a watch
of its own inode in the same inotify descriptor, since events by name no
longer reach it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from typing import Callable, Dict, List, Optional, Set, Tuple

import gevent
from inotify_simple import INotify, flags, parse_events

from .watch import INOTIFY_READ, FileWatch

log = logging.getLogger(__name__)

#: What a directory's watch hears: growth and attribute changes of its files by
#: name, and names appearing and disappearing; and the directory itself going.
DIR_EVENTS = (flags.MODIFY | flags.ATTRIB | flags.CREATE | flags.DELETE | flags.MOVED_FROM
              | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF)
#: What the watch of a file that lost its name hears: only its growth (its
#: fate is settled: it is served until its clients have it all).
INODE_EVENTS = flags.MODIFY

# Tested in the dispatch loop: ints, not enum lookups.
_MODIFY = int(flags.MODIFY)
_APPEAR = int(flags.CREATE | flags.MOVED_TO)
_VANISH = int(flags.DELETE | flags.MOVED_FROM)
_MOVED_FROM = int(flags.MOVED_FROM)
_ATTRIB = int(flags.ATTRIB)
_DIR_GONE = int(flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED)
_OVERFLOW = int(flags.Q_OVERFLOW)


class NotServed(OSError):
    """The file opened for a name may not be served (it leads out of the directory)."""


class SharedWatch(FileWatch):
    """A `FileWatch` with no inotify descriptor of its own: the `Catalog`
    tells it of its file's news (`grew`, `refresh`, `appeared`)."""

    ending = "closing its clients"

    def __init__(self, path: str, catalog: "Catalog", linger: bool = False) -> None:
        super().__init__(path, linger=linger)
        self.catalog = catalog
        self.wd: Optional[int] = None  # the inode's own watch, once it lost its name

    def start(self, patient: bool = False) -> None:
        """Open the file if it is there, else wait for the catalog to say it came."""
        if not self._open(patient):
            log.info("%s does not exist yet; waiting for it to appear", self.path)

    def check(self, fd: int) -> None:
        super().check(fd)
        self.catalog.check_confined(self.path, fd)

    def _watch_inode(self, fd: int) -> None:
        """Nothing: the directory's watch reports this file by name."""

    def refresh(self, moved: bool) -> None:
        super().refresh(moved)
        if self.unnamed.is_set() and self.wd is None and self.fd is not None:
            self.wd = self.catalog.watch_inode(self)

    def renamed_over(self) -> bool:
        """Whether PATH now names another file than the one open (another was
        renamed onto it: the directory's watch says only that a name appeared)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        mine = os.fstat(self.fd)
        return (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino)

    def close(self) -> None:
        if self.wd is not None:
            self.catalog.forget_inode(self.wd)
            self.wd = None
        super().close()


#: Told of a file of the set by name: how it changed (the inotify mask).
Dispatch = Callable[[str, int], None]


class Catalog:
    """The served set: ``paths`` is one directory (then ``glob`` selects its
    files) or a list of files. ``names`` maps each served name to its
    directory. `start` scans and watches; ``dispatch`` then hears of every
    change to a name of the set (or one just gone from it), ``failed`` of the
    directory being deleted or moved (nothing can be served from it any more)."""

    def __init__(self, paths: List[str], glob: str = "*", follow_symlinks: bool = False) -> None:
        self.glob = glob
        self.follow_symlinks = follow_symlinks
        self.directory: Optional[str] = None
        self.fixed: Dict[str, str] = {}
        if len(paths) == 1 and os.path.isdir(paths[0]):
            self.directory = os.path.abspath(paths[0])
        else:
            for path in paths:
                path = os.path.abspath(path)
                self.fixed[os.path.basename(path)] = os.path.dirname(path)
        self.names: Dict[str, str] = dict(self.fixed)
        self.error: Optional[OSError] = None
        self._real = os.path.realpath(self.directory) if self.directory else None
        self._unreadable: Set[str] = set()
        self._dirs: Dict[int, str] = {}
        self._inodes: Dict[int, SharedWatch] = {}
        self._inotify: Optional[INotify] = None
        self._watcher = None
        self._dispatch: Optional[Dispatch] = None
        self._failed: Optional[Callable[[OSError], None]] = None

    @staticmethod
    def duplicates(paths: List[str]) -> List[str]:
        """The base names given more than once (a name must say which file)."""
        seen: Set[str] = set()
        twice = []
        for path in paths:
            name = os.path.basename(os.path.abspath(path))
            if name in seen and name not in twice:
                twice.append(name)
            seen.add(name)
        return twice

    def path(self, name: str) -> str:
        return os.path.join(self.names[name], name)

    def start(self, dispatch: Dispatch, failed: Callable[[OSError], None]) -> None:
        """Watch the directories, then list the set (so that nothing created
        in between is missed). Raises OSError when a directory cannot be watched."""
        self._dispatch, self._failed = dispatch, failed
        self._inotify = INotify(nonblocking=True)
        directories = [self.directory] if self.directory else sorted(set(self.fixed.values()))
        for directory in directories:
            try:
                self._dirs[self._inotify.add_watch(directory, DIR_EVENTS)] = directory
            except OSError as error:
                self.close()
                raise OSError(error.errno, f"cannot watch {directory}: {error.strerror}") \
                    from None
        if self.directory:
            self._scan()
        self._watcher = gevent.get_hub().loop.io(self._inotify.fd, 1)
        self._watcher.start(self._on_events)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def listing(self) -> List[Tuple[str, os.stat_result]]:
        """The files of the set that exist now, sorted by name, with their status."""
        found = []
        for name in sorted(self.names):
            try:
                found.append((name, os.stat(self.path(name))))
            except OSError:
                pass
        return found

    def check_confined(self, path: str, fd: int) -> None:
        """Raise `NotServed` when the file open as ``fd`` lies outside the
        directory and symbolic links may not lead out of it."""
        if self._real is None or self.follow_symlinks:
            return
        real = os.path.realpath(f"/proc/self/fd/{fd}")
        if os.path.dirname(real) != self._real and \
                os.path.commonpath([real, self._real]) != self._real:
            raise NotServed(f"{path} leads out of {self.directory} (see --follow-symlinks)")

    def watch_inode(self, watch: SharedWatch) -> int:
        """Watch the growth of a served file that lost its name; the watch's id."""
        wd = self._inotify.add_watch(f"/proc/self/fd/{watch.fd}", INODE_EVENTS)
        self._inodes[wd] = watch
        return wd

    def forget_inode(self, wd: int) -> None:
        if self._inodes.pop(wd, None) is not None and self._inotify is not None:
            try:
                self._inotify.rm_watch(wd)
            except OSError:  # the file is gone, and its watch with it
                pass

    def _scan(self) -> None:
        """(Re)list the directory: the set is what matches and may be served."""
        present = set()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if self._admit(entry.name):
                    present.add(entry.name)
        for name in [name for name in self.names if name not in present]:
            del self.names[name]
        log.info("serving %d files of %s matching %r", len(self.names), self.directory,
                 self.glob)

    def _matches(self, name: str) -> bool:
        """The glob as a shell takes it: a dot file only when the pattern starts with a dot."""
        if name.startswith(".") and not self.glob.startswith("."):
            return False
        return fnmatch.fnmatchcase(name, self.glob)

    def _admit(self, name: str) -> bool:
        """Whether the directory's ``name`` is (now) in the set; adds it if so."""
        if name in self.names:
            return True
        if not self._matches(name):
            return False
        path = os.path.join(self.directory, name)
        reason = self._unservable(path)
        if reason is None:
            self.names[name] = self.directory
            self._unreadable.discard(name)
            return True
        if reason:
            self.unservable(name, reason)
        return False

    def unservable(self, name: str, reason: str) -> None:
        """Say once (until the name is served again) why ``name`` is not served."""
        if name not in self._unreadable:
            self._unreadable.add(name)
            directory = self.names.get(name) or self.directory
            log.warning("not serving %s: %s", os.path.join(directory, name), reason)

    def _unservable(self, path: str) -> Optional[str]:
        """Why ``path`` may not be served; "" when it is simply no regular
        file (a FIFO, socket, device or directory: skipped quietly); None
        when it may be."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if not self.follow_symlinks:
                    real = os.path.realpath(path)
                    if os.path.commonpath([real, self._real]) != self._real:
                        return "a symbolic link out of the directory (see --follow-symlinks)"
                st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                return ""
            # A regular file: opening it never blocks. Only to learn that it can be.
            os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY))
        except FileNotFoundError:
            return ""
        except OSError as error:
            return error.strerror or str(error)
        return None

    def _on_events(self) -> None:
        try:
            events = parse_events(os.read(self._inotify.fd, INOTIFY_READ))
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(error)
            return
        dispatch = self._dispatch
        for wd, mask, _cookie, name in events:
            if mask & _OVERFLOW:
                self._overflowed()
                continue
            inode = self._inodes.get(wd)
            if inode is not None:
                inode.grew()
                continue
            directory = self._dirs.get(wd)
            if directory is None:
                continue
            if mask & _DIR_GONE:
                if not name:
                    self._fail(OSError(f"{directory} was deleted or moved"))
                    return
            if self.directory is None:
                if self.fixed.get(name) != directory:
                    continue
            elif mask & (_APPEAR | _ATTRIB) and name not in self.names:
                if self._admit(name):
                    log.info("now serving %s", os.path.join(directory, name))
            elif mask & _VANISH and name in self.names:
                del self.names[name]
                log.info("%s is no longer served: it was %s", os.path.join(directory, name),
                         "moved" if mask & _MOVED_FROM else "deleted")
            if name:
                dispatch(name, mask)

    def _overflowed(self) -> None:
        """Events were lost: list the directory again, and have every open
        file look again (`Dispatch` with every change)."""
        log.warning("inotify queue overflowed; listing the files again")
        if self.directory:
            self._scan()
        for name in list(self.names):
            self._dispatch(name, -1)

    def _fail(self, error: OSError) -> None:
        log.error("cannot serve any more: %s", error)
        self.error = error
        self.close()
        self._failed(error)


def tell(watch: SharedWatch, mask: int) -> None:
    """Pass a change of its file's name on to the open file's watch: appeared
    (perhaps renamed over the open one), grown, attributes changed (or
    deleted: its link count), renamed away or deleted. A mask of -1 (events
    were lost) means all of them."""
    if watch.fd is None:
        if mask & _APPEAR:
            watch.appeared()
        return
    if mask & _APPEAR:
        _tell(watch, lambda: watch.refresh(moved=watch.renamed_over()))
    elif mask & (_VANISH | _ATTRIB):
        _tell(watch, lambda: watch.refresh(moved=bool(mask & _MOVED_FROM) and mask != -1))
    if mask & _MODIFY and watch.fd is not None and not watch.gone.is_set():
        watch.grew()


def _tell(watch: FileWatch, news: Callable[[], None]) -> None:
    try:
        news()
    except OSError as error:
        watch.failed(error)

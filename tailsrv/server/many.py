"""`ManyServer`: one server for several files, or for the files of a directory.

It is a `TailServer` whose headers may name a file (`tailsrv.names`:
``access.log -10l``, or ``*`` for the list of files) and whose set of files
is a `Catalog`. Each file that has clients is a `ServedFile`: its own watch,
`Fanout` and, with ``follow_name``, `Rotation`, placed exactly as the one file
of a `TailServer` is (`Placement`). A file with no clients is closed, and costs
nothing but its name. A file deleted or moved out of the set ends its clients
as a single file's deletion ends a `TailServer`'s, while the server goes on.

With one file in the set a header without a name means it, as for a
`TailServer`; with several, such a header is rejected, and the log says to
name a file.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Tuple

import gevent

from ..names import Ask, NamedHeaderReader, list_line
from ..protocol import BadHeader, byte_position
from .catalog import Catalog, SharedWatch, tell
from .headers import Pending
from .placement import Placement
from .rotation import Rotation
from .stream import Client, Fanout
from .tailserver import TailServer, _write_all

log = logging.getLogger(__name__)


class ServedFile(Placement):
    """One file of a `ManyServer` while it has clients (or a request is
    being placed in it: ``holds``)."""

    def __init__(self, server: "ManyServer", name: str) -> None:
        self.server = server
        self.name = name
        self.holds = 0
        self.watch = server.new_watch(server.catalog.path(name))
        self.fanout = Fanout(self.watch, self.client_ended)
        self.rotation = (Rotation(self, server.rotation_grace) if server.follow_name
                         else None)

    @property
    def closed(self) -> bool:
        """Whether the server is stopping (`Rotation` asks)."""
        return self.server.closed

    def new_watch(self, path: str) -> SharedWatch:
        return self.server.new_watch(path)

    def start(self) -> None:
        """Open the file (or wait for it), and follow it. Raises OSError."""
        self.watch.start()
        self.watch.gone.rawlink(self._file_gone)
        if self.rotation is not None:
            self.rotation.start()

    def _file_gone(self, _event) -> None:
        self.server.file_gone(self)

    def stop(self) -> None:
        """The new file of a rotation cannot be followed: this file's clients
        end (the server goes on with the others)."""
        self.server.file_gone(self)

    def client_ended(self, client: Client, why: Optional[BaseException]) -> None:
        self.server.client_ended(client, why)
        self.server.release(self, hold=False)

    def truncations(self) -> int:
        return sum(fanout.watch.truncations for fanout in self.fanouts())

    def retired(self) -> None:
        """An old file is done: this file may be idle now."""
        self.server.release(self, hold=False)

    def idle(self) -> bool:
        """Nobody reads the file, nor waits to: it may be closed."""
        return not (self.holds or self.fanout.clients
                    or self.rotation is not None and self.rotation.retiring)

    def close(self) -> None:
        """End its clients, close the file."""
        if self.rotation is not None:
            self.rotation.stop()
        self.fanout.close()
        self.watch.close()


class ManyServer(TailServer):
    """Streams the files of ``paths`` (a directory, or several files) to
    every client of ``listener``. ``glob`` selects a directory's files,
    ``follow_symlinks`` lets a symbolic link lead out of it; the other
    options are `TailServer`'s, per file."""

    reader = NamedHeaderReader

    def __init__(self, listener, paths: List[str], *, glob: str = "*",
                 follow_symlinks: bool = False, **options) -> None:
        self.catalog = Catalog(paths, glob, follow_symlinks)
        super().__init__(listener, paths, **options)

    def serve_files(self, paths, linger: bool, follow_name: bool,
                    rotation_grace: Optional[float]) -> None:
        self.linger = linger
        self.follow_name = follow_name
        self.rotation_grace = rotation_grace
        self.open: Dict[str, ServedFile] = {}
        self._truncations_closed = 0

    def new_watch(self, path: str) -> SharedWatch:
        watch = SharedWatch(path, self.catalog, linger=self.linger or self.follow_name)
        if self.follow_name:
            watch.lingering = ("its clients finish it; new clients get the new file of "
                               "that name (--follow-name)")
        return watch

    def start_files(self) -> None:
        self.catalog.start(self._changed, self._catalog_failed)

    def stop_files(self) -> None:
        for served in list(self.open.values()):
            self._close(served)
        self.catalog.close()

    @property
    def error(self) -> Optional[OSError]:
        return self.catalog.error

    def _catalog_failed(self, _error: OSError) -> None:
        gevent.spawn(self.stop)

    def _changed(self, name: str, mask: int) -> None:
        """News of a name of the set, for its open file if it has one."""
        served = self.open.get(name)
        if served is not None:
            tell(served.watch, mask)

    def listing(self) -> List[Tuple[str, os.stat_result]]:
        return self.catalog.listing()

    def lookup(self, name: Optional[str]) -> Optional[ServedFile]:
        """The open file ``name`` (opened if need be), held until `release`;
        None when there is no such file in the set, or it cannot be opened
        (logged). None names the one file of a set of one."""
        names = self.catalog.names
        if name is None:
            if len(names) != 1:
                return None
            name = next(iter(names))
        served = self.open.get(name)
        if served is None:
            if name not in names:
                return None
            served = ServedFile(self, name)
            try:
                served.start()
            except OSError as error:
                self.catalog.unservable(name, error.strerror or str(error))
                served.close()
                return None
            self.open[name] = served
        served.holds += 1
        return served

    def release(self, placement: Placement, hold: bool = True) -> None:
        """Let go of a `lookup`'s hold (or, ``hold`` false, a client ended):
        a file nobody reads any more is closed, in a greenlet of its own: not
        in the callback that got here (it may be the fanout's own pass), and
        closing may wait (for its rotation's greenlets to end)."""
        served = placement
        if hold:
            served.holds -= 1
        if served.idle():
            gevent.spawn(self._close_idle, served)

    def _close_idle(self, served: ServedFile) -> None:
        if served.idle():
            self._close(served)

    def file_gone(self, served: ServedFile) -> None:
        """The file was deleted or moved (or could no longer be read): its
        clients end, the server goes on."""
        if self.open.get(served.name) is served:
            gevent.spawn(self._close, served)

    def _close(self, served: ServedFile) -> None:
        """Forget a file and close it (ending its clients), once."""
        if self.open.get(served.name) is served:
            del self.open[served.name]
            self._truncations_closed += served.truncations()
            served.close()

    def truncations(self) -> int:
        """Times a served file shrank (while it was open: a closed file is
        not watched), all files together."""
        return self._truncations_closed + sum(s.truncations() for s in self.open.values())

    def fanouts(self) -> List[Fanout]:
        return [fanout for served in self.open.values() for fanout in served.fanouts()]

    def slowest_lag(self) -> int:
        return max((fanout.slowest_lag() for fanout in self.fanouts()), default=0)

    def _arrived(self, pending: Pending, ask: Ask) -> None:
        """A whole header: the list, or a client of the file it names."""
        if ask.listing:
            self.pool.spawn(self._list, pending)
            return
        served = self.lookup(ask.name)
        if served is None:
            self._refused(pending, BadHeader(self._why_not(ask.name)))
            return
        pending.peer = f"{pending.peer} [{served.name}]"
        request = ask.request
        if request.lines or request.announce:
            self.pool.spawn(self._handle, pending, request, served)
            return
        try:
            self._follow(pending, request, byte_position(request.offset, served.watch.size),
                         served.fanout)
        finally:
            self.release(served)

    def _handle(self, pending: Pending, request, served: ServedFile) -> None:
        try:
            self.handle(pending, request, served)
        finally:
            self.release(served)

    def _why_not(self, name: Optional[str]) -> str:
        if name is None:
            return (f"{len(self.catalog.names)} files are served: name one, e.g. "
                    "'app.log -10l' (the header '*' lists them)")
        return f"no file named {name!r} is served"

    def _list(self, pending: Pending) -> None:
        """Answer ``*``: one line per file, then close."""
        try:
            _write_all(pending.fd, b"".join(list_line(name, st.st_size)
                                            for name, st in self.listing()))
        except OSError as error:
            log.info("%s gone while listing files: %s", pending.peer, error.strerror or error)
        else:
            log.info("%s listed the files", pending.peer)
        finally:
            self._closed(pending.fd)

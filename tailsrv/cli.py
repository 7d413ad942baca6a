"""tailsrv - stream a growing file to many TCP clients, like `tail -f` as a server.

Usage:
  tailsrv [-p PORT] [--bind ADDR]... [options] PATH...
  tailsrv (-h | --help)
  tailsrv --version

Each client connects and sends a header, an ASCII integer ending in a newline:
`0` streams PATH from its start, `1000` from byte 1000, `-1000` its last 1000
bytes. The server then sends the file from there and keeps sending as it grows,
until the client disconnects. PATH need not exist yet: clients are held until
it appears. When PATH is deleted or moved the server closes every client and
exits with status 0 (but see --follow-name).

Several files: `tailsrv -p PORT PATH PATH...` serves those files, and
`tailsrv -p PORT DIR` the regular files of the directory DIR (not its
subdirectories; files created or renamed into it later too). A header then
starts with the file's base name, percent-encoded, and a space
(`app.log -10l`); the header `*` gets the list of files, one `NAME SIZE` line
each. See docs/many-files.md.

Three header extensions, which clients of the original never send: a number
ending in `l` counts lines, like `tail -n` (`-10l` the last 10 lines, `25l`
after the first 25, waiting for them); a final `?` (`-10l?`) makes the server
first send the byte position it starts at, as one decimal line; a resume proof
(`12#6:ea4ec125b82d5527`, a digest of the bytes before the position) makes it
check that the file still holds them, and answer `!replaced` and close if not.

Options:
  -p PORT, --port PORT         TCP port to listen on: on every interface (IPv6
                               and IPv4), or on the addresses of --bind. Needed
                               unless every address given is a unix socket,
                               systemd passes the sockets, or --http alone
                               serves the file (then no stream port is open).
  --bind ADDR                  Listen on ADDR instead of every interface; give
                               it again for more. ADDR is an IPv4 or IPv6
                               address (127.0.0.1, ::1, [::1]) on the port of
                               option -p (an IPv6 address listens on IPv6
                               only), or unix:PATH, a unix stream socket of
                               mode 0660 (a stale socket file is replaced, the
                               file is removed at exit; unix:@NAME is an
                               abstract socket).
  --max-clients N              Serve at most N connections at once; more are
                               accepted, logged and closed at once (N for
                               each process of --workers).
  --workers N                  Serve with N processes on the same sockets (auto:
                               one per core), each with its own clients; a
                               parent restarts one that is killed. See
                               docs/operations.md [default: 1].
  --metrics ADDR:PORT          Serve Prometheus metrics over HTTP at
                               http://ADDR:PORT/metrics (127.0.0.1:9100,
                               [::1]:9100, or :9100 for every interface).
  --http ADDR:PORT             Serve the file over HTTP, in the same process:
                               a viewer page at http://ADDR:PORT/ and the raw
                               stream at /stream?start=H (H a header as above,
                               default -100l). Same address forms as --metrics;
                               a port of its own, not -p's. Without -p it is the
                               only port. Anyone who reaches it reads the file
                               unless you give --http-auth.
  --http-auth FILE             Ask HTTP clients for the user name and password
                               in FILE, one line user:password (basic
                               authentication: put TLS in front, see docs/http.md).
  --glob PATTERN               With a directory: serve only the files whose
                               name matches PATTERN, as a shell matches it (a
                               name starting with a dot only when PATTERN does)
                               [default: *].
  --follow-symlinks            With a directory: also serve symbolic links that
                               lead out of it.
  --linger-after-file-is-gone  Keep running and serving the open file after PATH
                               is deleted or moved.
  --follow-name                Follow PATH across log rotation, like `tail -F`:
                               when PATH is moved or deleted, new clients get
                               the new file at PATH (once it appears), and the
                               clients of the old file get all of it, then are
                               closed once they have it all and it has not
                               grown for --rotation-grace seconds.
  --rotation-grace SECS        Seconds the old file must stay unchanged before
                               its caught-up clients are closed [default: 3].
  --header-timeout SECS        Seconds a client has to send its header before it
                               is disconnected [default: 30].
  --log-level LEVEL            Least severe messages logged: debug, info,
                               warning or error [default: info].
  --journald                   Log to the systemd journal instead of stderr.
  -h, --help                   Show this help and exit.
  --version                    Show the version and exit.

Truncation: when PATH shrinks, clients whose position lies past its new end are
disconnected (their offsets mean nothing any more) and logged; the others go on.

Socket activation: started by systemd with sockets to serve ($LISTEN_FDS and
$LISTEN_PID), the server serves on those and binds nothing itself: the
options --port and --bind are then ignored. With $NOTIFY_SOCKET set it reports
READY=1 and STOPPING=1 (Type=notify).

Descriptors: at start the soft limit on open files is raised to the hard limit
(one descriptor per client). When they run out, new connections wait in the
backlog, logged once, while current clients are served.

Examples:
  tailsrv -p 4321 /var/log/app.log
  tailsrv -p 4321 --bind 127.0.0.1 --bind ::1 --metrics 127.0.0.1:9100 app.log
  tailsrv --bind unix:/run/tailsrv/app.sock --max-clients 1000 app.log
  tailsrv --http 127.0.0.1:8080 app.log   (the viewer alone: http://localhost:8080/)
  tailsrv -p 4321 --http :8080 app.log   (stream port and viewer, every interface)
  tailsrv -p 4321 --follow-name /var/log/app.log   (a log that logrotate rotates)
  tailsrv -p 4321 --glob '*.log' /var/log   (then: echo 'syslog.log -10l' | nc ...)
  echo -10l | nc localhost 4321        (the last 10 lines, then what is appended;
                                       nc is in Debian's netcat-openbsd)
  tscat -n 10 localhost:4321           (the same with the client installed here)

Exit status: 0 after SIGTERM, SIGINT or PATH gone (without --follow-name); 1
on a runtime error (port in use, PATH unusable, the file could no longer be
read, or with --follow-name the directory of PATH gone); 2 on bad usage.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
from typing import List, Optional, Tuple

import gevent

import tailsrv

from .logs import BatchingHandler, cheap_records, only_handler, tag_lines
from .ops.systemd import journal_handler, listen_fds, notify
from .ops.workers import PARENT_TAG, Worker, supervise, worker_count
from .server.accept import raise_open_files_limit
from .server.listeners import (Bind, describe, inherited_listener, open_listener, parse_bind,
                               parse_host_port, remove_socket_file, tcp_listener)
from .server.tailserver import TailServer
from .usage import UsageError, complain, console_script, parse, usage_section

log = logging.getLogger("tailsrv")

LOG_LEVELS = ("debug", "info", "warning", "error")


@console_script
def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parse(__doc__, argv)
        if args["--version"]:
            print(f"tailsrv {tailsrv.__version__}")
            return 0
        port = _port(args["--port"]) if args["--port"] is not None else None
        binds = [_parsed(parse_bind, text, "--bind") for text in args["--bind"]]
        max_clients = _count(args["--max-clients"], "--max-clients")
        metrics = _parsed(parse_host_port, args["--metrics"], "--metrics")
        http = _parsed(parse_host_port, args["--http"], "--http")
        credentials = _credentials(args["--http-auth"], http)
        header_timeout = _positive(args["--header-timeout"], "--header-timeout")
        grace = _positive(args["--rotation-grace"], "--rotation-grace")
        if args["--follow-name"] and args["--linger-after-file-is-gone"]:
            raise UsageError("--follow-name and --linger-after-file-is-gone cannot be "
                             "combined: --follow-name already keeps the old file for its "
                             "clients")
        level = _choice(args["--log-level"], LOG_LEVELS, "--log-level")
        _check_paths(args["PATH"], args["--glob"], args["--follow-symlinks"])
        workers = _parsed(worker_count, args["--workers"], "--workers")
        activated = listen_fds()
        stream = _stream_binds(port, binds, http, activated)
        _distinct_ports(port, stream, metrics, http)
    except (UsageError, ValueError) as error:
        complain(f"tailsrv: {error}\n{usage_section(__doc__)}")
        return 2
    if not setup_logging(level, args["--journald"]):
        return 1
    if workers > 1:  # from the first line on: the parent's lines say so
        tag_lines(PARENT_TAG)
    raise_open_files_limit()
    listeners: List[socket.socket] = []
    owned: List[str] = []  # unix socket files to remove at exit
    try:
        if activated:
            if port is not None or binds:
                log.info("serving on the sockets systemd passed; ignoring -p and --bind")
            for fd, name in activated:
                listeners.append(inherited_listener(fd))
                log.info("systemd passed fd %d (%s): %s", fd, name, describe(listeners[-1]))
        else:
            for bind in stream:
                listeners.append(_listen(bind, port))
                if bind.unix is not None and not bind.unix.startswith("@"):
                    owned.append(bind.unix)
        metrics_listener = _listen_extra(metrics, "serve metrics") if metrics else None
        http_listener = _listen_extra(http, "serve HTTP") if http else None
        where = ", ".join(describe(listener) for listener in listeners)
        if not activated and not binds and port is not None:  # as the original says it
            where = f"port {port} ({where})"
        elif not listeners:
            where = "the HTTP port only (no -p: no stream port)"
        return launch(workers, args, listeners, where, metrics_listener, header_timeout,
                      max_clients, grace, http_listener, credentials)
    except OSError as error:
        log_runtime_error(error)
        for listener in listeners:
            listener.close()
        return 1
    finally:
        for path in owned:
            remove_socket_file(path)


def _stream_binds(port: Optional[int], binds: List[Bind], http, activated) -> List[Bind]:
    """Where the stream port listens: every --bind, or every interface with
    -p alone, or nowhere when only --http serves the file (then it opens
    nothing else); UsageError when a TCP address has no port."""
    if activated:
        return []
    if port is None and any(bind.unix is None for bind in binds):
        raise UsageError("-p PORT is required with --bind ADDR (an IP address)")
    if port is None and not binds and http is None:
        raise UsageError("-p PORT is required (the stream port), unless --http ADDR:PORT "
                         "alone serves the file, every --bind is unix:PATH or systemd "
                         "passes the sockets")
    return binds or ([Bind()] if port is not None else [])


def _distinct_ports(port: Optional[int], stream: List[Bind], metrics, http) -> None:
    """UsageError when --http or --metrics would take an address the stream
    port (or the other) listens on: it says so rather than 'Address already
    in use' at start."""
    taken = {(bind.host, port): "-p" for bind in stream if bind.unix is None}
    for option, address in (("--metrics", metrics), ("--http", http)):
        if address is None:
            continue
        host, number = address
        for (other_host, other_port), other in taken.items():
            if other_port == number and (other_host == host or "" in (other_host, host)):
                raise UsageError(f"{option} and {other} name the same port {number}: "
                                 f"each needs a port of its own")
        taken[address] = option


def _listen(bind: Bind, port: Optional[int]) -> socket.socket:
    try:
        return open_listener(bind, port)
    except OSError as error:
        where = (str(bind) if bind.unix is not None
                 else f"{bind.host} port {port}" if bind.host else f"port {port}")
        raise OSError(error.errno, f"cannot listen on {where}: {error.strerror or error}") \
            from None


def _listen_extra(address: Tuple[str, int], what: str) -> socket.socket:
    """The listener of --metrics or --http; ``what`` it is for, for errors."""
    host, port = address
    try:
        return tcp_listener(port, host)
    except OSError as error:
        raise OSError(error.errno, f"cannot {what} on {host or '*'}:{port}: "
                      f"{error.strerror or error}") from None


def launch(workers: int, *settings) -> int:
    """`run` the server in this process, or with ``--workers`` in that many
    processes under a parent (`tailsrv.ops.workers`); the exit status."""
    if workers == 1:
        return run(*settings)
    metrics = settings[3] is not None
    return supervise(workers, lambda worker: _worker(settings, worker), metrics)


def _worker(settings, worker: Worker) -> int:
    """`run` in one of the processes of ``--workers``: a runtime error (the
    file cannot be followed) is one line in the log and status 1, as in `main`."""
    try:
        return run(*settings, worker=worker)
    except OSError as error:
        log_runtime_error(error)
        return 1


def log_runtime_error(error: OSError) -> None:
    """The one line a runtime error gets in the log."""
    log.error("%s", error.strerror if error.filename is None and error.strerror else error)


def run(args, listeners: List[socket.socket], where: str,
        metrics_listener: Optional[socket.socket], header_timeout: float,
        max_clients: Optional[int], grace: float,
        http_listener: Optional[socket.socket] = None,
        credentials: Optional[bytes] = None, worker: Optional[Worker] = None) -> int:
    """Follow the file, serve on ``listeners`` (described by ``where`` in the
    log) and ``http_listener``, and return the exit status. ``worker``: this
    is one of the processes of ``--workers``."""
    path = " ".join(args["PATH"])
    server = _server(args, listeners, linger=args["--linger-after-file-is-gone"],
                     header_timeout=header_timeout, max_clients=max_clients,
                     follow_name=args["--follow-name"], rotation_grace=grace)
    if http_listener is not None:
        # Imported only when asked for, like metrics below: h11 and the page.
        from .http.front import HttpFront
        HttpFront(http_listener, server, credentials)
        log.info("HTTP at http://%s/ (%s)", describe(http_listener),
                 "basic authentication" if credentials else "no authentication")
    try:
        server.start()
    except OSError as error:
        raise OSError(error.errno, f"cannot follow {path}: {error.strerror or error}") \
            from None
    metrics = None
    if metrics_listener is not None:
        # Imported only when asked for: prometheus_client and gevent's WSGI
        # server are 10 MiB, a third of a server with a thousand clients.
        from .ops.metrics import MetricsServer
        metrics = (MetricsServer(metrics_listener, server) if worker is None else
                   MetricsServer(metrics_listener, server, worker.metrics_listener,
                                 worker.metrics_peers))
        metrics.start()
        log.info("metrics at http://%s/metrics", describe(metrics_listener))
    try:
        return serve(server, where)
    finally:
        if metrics is not None:
            metrics.stop(timeout=0)


def serve(server: TailServer, where: str) -> int:
    """Run until a signal or the file going away stops the server."""
    def stop(signum: int) -> None:
        log.info("%s received; shutting down", signal.Signals(signum).name)
        server.stop()

    handlers = [gevent.signal_handler(s, stop, s) for s in (signal.SIGTERM, signal.SIGINT)]
    log.info("listening on %s", where)
    # What start-up made lives as long as the process: out of the cyclic
    # collector's passes, which would otherwise walk it all again and again,
    # in the loop. Appends set off no pass (measured: docs/performance.md,
    # lat1 p99); connections do. Here, not in TailServer: an embedding
    # process's collector is its own.
    gc.freeze()
    notify("READY=1")
    try:
        server.serve_forever()
    finally:
        notify("STOPPING=1")
        for handler in handlers:
            handler.cancel()
    log.info("stopped")
    return 1 if server.error else 0


def _several(paths: List[str]) -> bool:
    """Whether PATH... asks for a server of several files: more than one
    PATH, or a directory."""
    return len(paths) > 1 or os.path.isdir(paths[0])


def _check_paths(paths: List[str], glob: str, follow_symlinks: bool) -> None:
    """PATH... and the options that only a directory takes; UsageError when
    they do not fit (a name must say which file: base names differ)."""
    from .server.catalog import Catalog
    twice = Catalog.duplicates(paths)
    if twice:
        raise UsageError(f"two files named {twice[0]!r}: a file is asked for by its base "
                         "name, so the base names must differ")
    directory = len(paths) == 1 and os.path.isdir(paths[0])
    if any(os.path.isdir(path) for path in paths) and not directory:
        raise UsageError("give one directory, or files: not a directory among several PATHs")
    if not directory and (glob != "*" or follow_symlinks):
        raise UsageError("--glob and --follow-symlinks need PATH to be a directory")


def _server(args, listeners: List[socket.socket], **options) -> TailServer:
    """The server of PATH...: a `TailServer` for one file, else a
    `ManyServer` (imported only then)."""
    paths = args["PATH"]
    if not _several(paths):
        return TailServer(listeners, paths[0], **options)
    from .server.many import ManyServer
    return ManyServer(listeners, paths, glob=args["--glob"],
                      follow_symlinks=args["--follow-symlinks"], **options)


def setup_logging(level: str, journald: bool) -> bool:
    """Send records to stderr, or to the journal; False if that is impossible."""
    handler: Optional[logging.Handler]
    if journald:
        handler = journal_handler()
        if handler is None:
            complain("tailsrv: --journald: no systemd journal here "
                     "(no journal socket, and stderr is not the journal)")
            return False
    else:
        handler = BatchingHandler()
    cheap_records()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    if isinstance(handler, BatchingHandler):
        only_handler(handler)
    return True


def _port(value: str) -> int:
    if value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    raise UsageError(f"invalid port {value!r}: expected a number from 1 to 65535")


def _count(value: Optional[str], option: str) -> Optional[int]:
    if value is None:
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise UsageError(f"invalid {option} {value!r}: expected a positive whole number")


def _parsed(parse, value: Optional[str], option: str):
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as error:
        raise UsageError(f"invalid {option} {value!r}: {error}") from None


def _credentials(path: Optional[str], http) -> Optional[bytes]:
    """The ``user:password`` of --http-auth, read now (never kept in argv)."""
    if path is None:
        return None
    if http is None:
        raise UsageError("--http-auth needs --http")
    from .http.rules import load_credentials
    try:
        return load_credentials(path)
    except OSError as error:
        raise UsageError(f"invalid --http-auth {path!r}: {error.strerror or error}") from None
    except ValueError as error:
        raise UsageError(f"invalid --http-auth: {error}") from None


def _positive(value: str, option: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise UsageError(f"invalid {option} {value!r}: expected a positive number of seconds")
    return number


def _choice(value: str, choices, option: str) -> str:
    if value.lower() not in choices:
        raise UsageError(f"invalid {option} {value!r}: expected one of {', '.join(choices)}")
    return value.lower()

"""tailsrv - stream a growing file to many TCP clients, like `tail -f` as a server.

Usage:
  tailsrv -p PORT [options] PATH
  tailsrv (-h | --help)
  tailsrv --version

Each client connects and sends a header, an ASCII integer ending in a newline:
`0` streams PATH from its start, `1000` from byte 1000, `-1000` its last 1000
bytes. The server then sends the file from there and keeps sending as it grows,
until the client disconnects. PATH need not exist yet: clients are held until
it appears. When PATH is deleted or moved the server closes every client and
exits with status 0.

Options:
  -p PORT, --port PORT         TCP port to listen on, on every interface (IPv6
                               and IPv4).
  --linger-after-file-is-gone  Keep running and serving the open file after PATH
                               is deleted or moved.
  --header-timeout SECS        Seconds a client has to send its header before it
                               is disconnected [default: 30].
  --log-level LEVEL            Least severe messages logged: debug, info,
                               warning or error [default: info].
  --journald                   Log to the systemd journal instead of stderr.
  -h, --help                   Show this help and exit.
  --version                    Show the version and exit.

Exit status: 0 after SIGTERM, SIGINT or PATH gone; 1 on a runtime error (port in
use, PATH unusable, the file could no longer be read); 2 on bad usage.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import List, Optional

import gevent
from docopt import DocoptExit, docopt

from . import __version__
from .listeners import tcp_listener
from .server import TailServer
from .systemd import journal_handler, notify

log = logging.getLogger("tailsrv")

LOG_LEVELS = ("debug", "info", "warning", "error")


class UsageError(Exception):
    """An argument docopt accepted but whose value is wrong."""


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = docopt(__doc__, argv, version=f"tailsrv {__version__}")
        port = _port(args["--port"])
        header_timeout = _positive(args["--header-timeout"], "--header-timeout")
        level = _choice(args["--log-level"], LOG_LEVELS, "--log-level")
    except DocoptExit as usage:
        print(usage, file=sys.stderr)
        return 2
    except UsageError as error:
        print(f"tailsrv: {error}\n{_usage()}", file=sys.stderr)
        return 2
    if not setup_logging(level, args["--journald"]):
        return 1
    try:
        listener = tcp_listener(port)
    except OSError as error:
        log.error("cannot listen on port %d: %s", port, error.strerror or error)
        return 1
    server = TailServer(listener, args["PATH"], linger=args["--linger-after-file-is-gone"],
                        header_timeout=header_timeout)
    try:
        server.start()
    except OSError as error:
        log.error("cannot follow %s: %s", args["PATH"], error.strerror or error)
        listener.close()
        return 1
    return serve(server, port)


def serve(server: TailServer, port: int) -> int:
    """Run until a signal or the file going away stops the server."""
    def stop(signum: int) -> None:
        log.info("%s received; shutting down", signal.Signals(signum).name)
        server.stop()

    handlers = [gevent.signal_handler(s, stop, s) for s in (signal.SIGTERM, signal.SIGINT)]
    log.info("listening on port %d", port)
    notify("READY=1")
    try:
        server.serve_forever()
    finally:
        notify("STOPPING=1")
        for handler in handlers:
            handler.cancel()
    log.info("stopped")
    return 1 if server.watch.error else 0


def setup_logging(level: str, journald: bool) -> bool:
    """Send records to stderr, or to the journal; False if that is impossible."""
    handler: Optional[logging.Handler]
    if journald:
        handler = journal_handler()
        if handler is None:
            print("tailsrv: --journald: no systemd journal here "
                  "(no journal socket, and stderr is not the journal)", file=sys.stderr)
            return False
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return True


def _usage() -> str:
    return __doc__.split("\n\n")[1].strip()


def _port(value: str) -> int:
    if value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    raise UsageError(f"invalid port {value!r}: expected a number from 1 to 65535")


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

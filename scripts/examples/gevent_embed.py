"""Serve several files from one gevent process, next to a small web app.

Usage:
  python scripts/examples/gevent_embed.py [--host HOST] HTTP_PORT PORT=PATH...

For example ``gevent_embed.py 8080 4321=/var/log/app.log 4322=/var/log/db.log``
streams app.log on port 4321 and db.log on port 4322 (to `tscat` or ``nc``), and
answers HTTP on port 8080 with one line per file: its path, size and number of
connected clients. SIGTERM or SIGINT stops everything cleanly: the web app and
the tail servers stop accepting, clients are disconnected, the process exits 0.

Nothing here needs monkey-patching: `TailServer` and `gevent.pywsgi` are gevent
servers already. A program that also uses blocking libraries patches first, as
most gevent programs do, and tailsrv works the same there; to run this example
that way (it then says "monkey-patched" when it starts)::

  python -m gevent.monkey scripts/examples/gevent_embed.py 8080 4321=/var/log/app.log
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import List

import gevent
from gevent import monkey
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from tailsrv import TailServer, tcp_listener


def status_app(servers: List[TailServer]):
    """A WSGI app that reports on the tail servers."""
    def app(environ, start_response):
        body = "".join(f"{server.watch.path} {server.watch.size} bytes, "
                       f"{server.connections} clients\n" for server in servers)
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode()]
    return app


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="", help="address to bind (default: all)")
    parser.add_argument("http_port", type=int)
    parser.add_argument("files", nargs="+", metavar="PORT=PATH")
    args = parser.parse_args(argv)

    servers = []
    for spec in args.files:
        port, _, path = spec.partition("=")
        servers.append(TailServer(tcp_listener(int(port), args.host), path))
    web = WSGIServer((args.host, args.http_port), status_app(servers), log=None)

    stopping = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)
    for server in servers:
        server.start()
    web.start()
    patched = " (monkey-patched)" if monkey.is_anything_patched() else ""
    print(f"serving {' '.join(args.files)} and HTTP on {args.http_port}{patched}", flush=True)

    stopping.wait()
    web.stop(timeout=1)
    for server in servers:
        server.stop(timeout=1)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Stream a file from inside gunicorn's gevent worker, next to a web page about it.

Usage:
  TAILSRV_BIND=127.0.0.1:4321 TAILSRV_FILE=/var/log/app.log \\
      gunicorn -c scripts/examples/gunicorn_embed.py -b 127.0.0.1:8080

streams app.log on port 4321 (to `tscat` or ``nc``) and answers HTTP on port
8080 with one line: the file's path, size and number of connected clients.
SIGTERM to gunicorn stops both and gunicorn exits 0.

This file is both gunicorn's configuration (``-c``: the settings and the two
hooks below) and the WSGI app (``app``). gunicorn's gevent worker
monkey-patches itself (``gevent.monkey.patch_all()``) before it loads the app;
then the ``post_worker_init`` hook starts a `TailServer` in the worker, on the
same gevent hub as the web server. On SIGTERM the worker stops taking requests
and the ``worker_exit`` hook disconnects the tail clients. One worker: the
TailServer listens on a port of its own, which only one process can bind.
"""

from __future__ import annotations

import os
from typing import Optional

from tailsrv import TailServer, tcp_listener
from tailsrv.server.listeners import parse_host_port

# gunicorn's settings.
wsgi_app = "gunicorn_embed:app"
pythonpath = os.path.dirname(os.path.abspath(__file__))
worker_class = "gevent"
workers = 1


class StatusPage:
    """The WSGI app: one line about the file the worker's `TailServer` streams."""

    def __init__(self) -> None:
        self.tail: Optional[TailServer] = None

    def start_tail(self) -> None:
        host, port = parse_host_port(os.environ["TAILSRV_BIND"])
        self.tail = TailServer(tcp_listener(port, host), os.environ["TAILSRV_FILE"])
        self.tail.start()

    def stop_tail(self) -> None:
        if self.tail is not None:
            self.tail.stop(timeout=1)

    def __call__(self, environ, start_response):
        watch = self.tail.watch
        body = f"{watch.path} {watch.size} bytes, {self.tail.connections} clients\n"
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode()]


app = StatusPage()


def post_worker_init(worker) -> None:
    """In the worker, patched and with the app loaded: start streaming."""
    worker.wsgi.start_tail()
    worker.log.info("tailsrv: streaming %s on %s", worker.wsgi.tail.watch.path,
                    os.environ["TAILSRV_BIND"])


def worker_exit(server, worker) -> None:
    """The worker is exiting (SIGTERM): disconnect the tail clients."""
    worker.wsgi.stop_tail()
    server.log.info("tailsrv: stopped")

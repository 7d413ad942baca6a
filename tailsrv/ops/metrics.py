"""Prometheus metrics: ``/metrics`` served by `gevent.pywsgi` in the server's
own process and event loop.

Nothing is counted on the per-append path: a custom collector reads the live
state of the `TailServer` when Prometheus scrapes (its connections, the
clients' offsets, the file's size), and the few counters the server keeps
move once per connection, not per byte. A scrape costs one pass over the
connected clients.
"""

from __future__ import annotations

import logging
from typing import Iterator

from gevent.pywsgi import WSGIServer
from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..server.accept import AcceptBackoff
from ..server.many import ManyServer
from ..server.tailserver import REJECT_REASONS, TailServer

log = logging.getLogger(__name__)

#: The one path served; anything else is a 404.
METRICS_PATH = "/metrics"

#: Most files of a server of several files given series of their own (label
#: ``file``): those with the most clients. Ten thousand files would be ten
#: thousand series per metric, more than a Prometheus wants per target; the
#: totals cover every file whatever the bound.
PER_FILE = 100


class TailCollector(Collector):
    """The metrics of one `TailServer`, read from its state at scrape time."""

    def __init__(self, server: TailServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        yield GaugeMetricFamily(
            "tailsrv_clients", "Connections being served, including those still "
            "sending their header.", value=server.connections)
        yield CounterMetricFamily(
            "tailsrv_connections_accepted", "Connections accepted, including those "
            "then rejected.", value=server.accepted)
        rejected = CounterMetricFamily(
            "tailsrv_connections_rejected", "Connections closed without file data: "
            "bad_header (malformed, too long or too late), max_clients (--max-clients "
            "reached).", labels=["reason"])
        for reason in REJECT_REASONS:
            rejected.add_metric([reason], server.rejected[reason])
        yield rejected
        yield CounterMetricFamily(
            "tailsrv_sent_bytes", "File bytes sent to clients.", value=server.bytes_sent())
        if isinstance(server, ManyServer):
            yield from self.collect_files(server)
            return
        yield GaugeMetricFamily(
            "tailsrv_file_size_bytes", "Size of the file served (0 until it exists).",
            value=server.watch.size)
        yield GaugeMetricFamily(
            "tailsrv_slowest_client_lag_bytes", "Bytes the furthest-behind client has "
            "yet to receive.", value=server.slowest_lag())
        yield CounterMetricFamily(
            "tailsrv_file_truncations", "Times the file shrank.",
            value=server.watch.truncations)

    @staticmethod
    def collect_files(server: ManyServer) -> Iterator[Metric]:
        """A server of several files: totals, and the `PER_FILE` files with
        the most clients by name."""
        yield GaugeMetricFamily(
            "tailsrv_files", "Files in the served set.", value=len(server.catalog.names))
        yield GaugeMetricFamily(
            "tailsrv_files_open", "Files open because they have clients.",
            value=len(server.open))
        yield GaugeMetricFamily(
            "tailsrv_slowest_client_lag_bytes", "Bytes the furthest-behind client of "
            "any file has yet to receive.", value=server.slowest_lag())
        yield CounterMetricFamily(
            "tailsrv_file_truncations", "Times a served file shrank, all files together.",
            value=server.truncations())
        busiest = sorted(server.open.values(), key=lambda served: -len(served.fanout.clients))
        clients = GaugeMetricFamily(
            "tailsrv_file_clients", f"Clients of a file (the {PER_FILE} files with the "
            "most clients).", labels=["file"])
        size = GaugeMetricFamily(
            "tailsrv_file_size_bytes", f"Size of a file (the {PER_FILE} files with the "
            "most clients).", labels=["file"])
        for served in busiest[:PER_FILE]:
            clients.add_metric([served.name], len(served.fanout.clients))
            size.add_metric([served.name], served.watch.size)
        yield clients
        yield size


class MetricsServer(AcceptBackoff, WSGIServer):
    """Serves ``/metrics`` for ``server`` on ``listener``, logging no access
    lines and sending errors to the log rather than stderr."""

    def __init__(self, listener, server: TailServer) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TailCollector(server))
        ProcessCollector(registry=registry)  # open fds vs. the limit, memory, CPU
        self._metrics = make_wsgi_app(registry)
        super().__init__(listener, self._route, log=None, error_log=log)

    def _route(self, environ, start_response):
        if environ.get("PATH_INFO") == METRICS_PATH:
            return self._metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"not found: metrics are at {METRICS_PATH}\n".encode()]

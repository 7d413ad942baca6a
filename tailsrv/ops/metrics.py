"""Prometheus metrics: ``/metrics`` served by `gevent.pywsgi` in the server's
own process and event loop.

Nothing is counted on the per-append path: a custom collector reads the live
state of the `TailServer` when Prometheus scrapes (its connections, the
clients' offsets, the file's size), and the few counters the server keeps
move once per connection, not per byte. A scrape costs one pass over the
connected clients.

With ``--workers`` each worker has its own server and so its own numbers; the
scrape, which any one worker accepts, answers the totals: that worker adds
the others' metrics, which each serves in the text format on a private unix
socket (`WorkerTotals`). prometheus_client's multiprocess mode does not fit:
it totals Counter and Gauge objects kept in shared files, updated as things
happen, where these metrics are read from the live state at scrape time.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import gevent
from gevent import socket as gsocket
from gevent.server import StreamServer

from gevent.pywsgi import WSGIServer
from prometheus_client import (CollectorRegistry, ProcessCollector, generate_latest,
                               make_wsgi_app)
from prometheus_client.parser import text_string_to_metric_families
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

#: Seconds a scrape waits for another worker's metrics; a worker that does not
#: answer (being restarted) is left out of the totals, which
#: ``tailsrv_workers_reporting`` then shows.
PEER_TIMEOUT = 2.0

#: How a metric of several workers adds up, where a sum would be wrong: they
#: all serve the same file, and the oldest worker's start is the server's.
COMBINE: Dict[str, Callable[[Iterable[float]], float]] = {
    "tailsrv_file_size_bytes": max,
    "tailsrv_slowest_client_lag_bytes": max,
    "process_start_time_seconds": min,
}


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


class WorkerTotals(Collector):
    """The metrics of this worker (``own``) and of the workers at ``peers``
    (unix socket addresses, ``@name`` abstract), added up (`COMBINE`)."""

    def __init__(self, own: CollectorRegistry, peers: List[str]) -> None:
        self.own = own
        self.peers = peers

    def collect(self) -> Iterator[Metric]:
        jobs = [gevent.spawn(_fetch, peer) for peer in self.peers]
        gevent.joinall(jobs, timeout=PEER_TIMEOUT)
        texts = [job.value for job in jobs if job.successful() and job.value is not None]
        for job in jobs:
            job.kill(block=False)
        sets = [list(self.own.collect())]
        sets += [list(text_string_to_metric_families(text)) for text in texts]
        yield from combine(sets)
        yield GaugeMetricFamily("tailsrv_workers_reporting", "Worker processes whose "
                                "metrics are in these totals.", value=len(sets))


def combine(sets: List[List[Metric]]) -> Iterator[Metric]:
    """One family per name, each sample the sum (or `COMBINE`) of that sample
    over ``sets`` (the metrics of each worker)."""
    families: Dict[str, Metric] = {}
    values: Dict[str, Dict[Tuple[str, Tuple], List[float]]] = {}
    for metrics in sets:
        for family in metrics:
            families.setdefault(family.name, family)
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples.setdefault(key, []).append(sample.value)
    for name, family in families.items():
        total = Metric(name, family.documentation, family.type)
        how = COMBINE.get(name, sum)
        for (sample, labels), numbers in values[name].items():
            total.add_sample(sample, dict(labels), how(numbers))
        yield total


def _fetch(address: str) -> Optional[str]:
    """The text another worker's `ExpositionServer` at ``address`` sends."""
    with gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM) as sock:
        sock.connect("\0" + address[1:] if address.startswith("@") else address)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)


class ExpositionServer(StreamServer):
    """Sends the metrics of ``registry`` in the text format to whoever
    connects to ``listener`` (another worker adding them up), then closes."""

    def __init__(self, listener, registry: CollectorRegistry) -> None:
        super().__init__(listener, self._send)
        self.registry = registry

    def _send(self, sock, _address) -> None:
        sock.sendall(generate_latest(self.registry))


class MetricsServer(AcceptBackoff, WSGIServer):
    """Serves ``/metrics`` for ``server`` on ``listener``, logging no access
    lines and sending errors to the log rather than stderr.

    In a worker of ``--workers``, ``private`` is the listener on which it
    serves its own metrics to the others, and ``peers`` where theirs are:
    ``/metrics`` then answers the totals over the workers."""

    def __init__(self, listener, server: TailServer, private=None,
                 peers: Optional[List[str]] = None) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TailCollector(server))
        ProcessCollector(registry=registry)  # open fds vs. the limit, memory, CPU
        self.private: Optional[ExpositionServer] = None
        if private is not None:
            self.private = ExpositionServer(private, registry)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(WorkerTotals(self.private.registry, peers or []))
        self._metrics = make_wsgi_app(registry)
        super().__init__(listener, self._route, log=None, error_log=log)

    def start(self) -> None:
        if self.private is not None:
            self.private.start()
        super().start()

    def stop(self, timeout: Optional[float] = None) -> None:
        if self.private is not None:
            self.private.stop(timeout=timeout)
        super().stop(timeout=timeout)

    def _route(self, environ, start_response):
        if environ.get("PATH_INFO") == METRICS_PATH:
            return self._metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"not found: metrics are at {METRICS_PATH}\n".encode()]

"""--metrics end to end: scrape /metrics while clients stream."""

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (IO_TIMEOUT, append, connect, free_port, read_exactly,
                      read_until_closed, wait_for)

MIB = 1 << 20


def scrape(port: int) -> dict:
    """``{(name, labels...): value}`` for every sample at /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, *sorted(s.labels.values())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_scrape_while_clients_stream(tmp_path, start_server):
    path = tmp_path / "big"
    path.write_bytes(b"x" * (8 * MIB))
    metrics_port = free_port()
    server = start_server(path, "--metrics", f"127.0.0.1:{metrics_port}",
                          "--max-clients", "3")
    server.wait_log("closed before the header")  # the fixture's probe is gone
    with connect(server.port, b"nonsense\n") as bad:
        assert read_until_closed(bad) == b""
    server.wait_log("rejected: not a number")
    wait_for(lambda: scrape(metrics_port)[("tailsrv_clients",)] == 0)  # both handlers done

    slow = socket.socket()  # reads nothing: stays megabytes behind
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.settimeout(IO_TIMEOUT)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"0\n")
    fast = [connect(server.port, b"-100\n"), connect(server.port, b"-100\n")]
    for client in fast:
        assert read_exactly(client, 100) == b"x" * 100
    with connect(server.port, b"0\n") as extra:  # the fourth client: over the limit
        server.wait_log("refused: already serving 3 clients")

    metrics = wait_for(lambda: (m := scrape(metrics_port))[("tailsrv_clients",)] == 3 and m)
    assert metrics[("tailsrv_connections_accepted_total",)] == 6  # probe, 3, bad, extra
    assert metrics[("tailsrv_connections_rejected_total", "bad_header")] == 2  # probe, bad
    assert metrics[("tailsrv_connections_rejected_total", "max_clients")] == 1
    assert metrics[("tailsrv_file_size_bytes",)] == 8 * MIB
    lag = metrics[("tailsrv_slowest_client_lag_bytes",)]
    assert 0 < lag < 8 * MIB
    sent = metrics[("tailsrv_sent_bytes_total",)]
    assert 200 + (8 * MIB - lag) <= sent
    assert metrics[("process_open_fds",)] > 0

    append(path, b"y" * 1000)
    assert read_exactly(slow, 8 * MIB + 1000)[-1000:] == b"y" * 1000
    for client in fast:
        read_exactly(client, 1000)
    metrics = wait_for(lambda: (m := scrape(metrics_port))[
        ("tailsrv_slowest_client_lag_bytes",)] == 0 and m)
    assert metrics[("tailsrv_file_size_bytes",)] == 8 * MIB + 1000
    assert metrics[("tailsrv_sent_bytes_total",)] == 8 * MIB + 1000 + 2 * 1100

    slow.close()
    for client in fast:
        client.close()


def test_other_paths_are_not_found(logfile, start_server):
    metrics_port = free_port()
    start_server(logfile, "--metrics", f"127.0.0.1:{metrics_port}")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/", timeout=IO_TIMEOUT)
    assert raised.value.code == 404


def test_metrics_of_many_files_totals_and_bounded_labels(tmp_path, start_server):
    from tailsrv.ops.metrics import PER_FILE
    directory = tmp_path / "logs"
    directory.mkdir()
    for n in range(PER_FILE + 20):
        (directory / f"{n:03d}.log").write_bytes(b"x" * n)
    metrics_port = free_port()
    server = start_server(directory, "--metrics", f"127.0.0.1:{metrics_port}")
    socks = [connect(server.port, b"%03d.log 0\n" % n) for n in range(PER_FILE + 10)]
    try:
        for n, sock in enumerate(socks):
            assert read_exactly(sock, n) == b"x" * n
        metrics = scrape(metrics_port)
        assert metrics[("tailsrv_files",)] == PER_FILE + 20
        assert metrics[("tailsrv_files_open",)] == PER_FILE + 10
        assert metrics[("tailsrv_sent_bytes_total",)] == sum(range(PER_FILE + 10))
        per_file = {key[1]: value for key, value in metrics.items()
                    if key[0] == "tailsrv_file_size_bytes"}
        assert len(per_file) == PER_FILE
        assert all(value == int(name[:3]) for name, value in per_file.items())
    finally:
        for sock in socks:
            sock.close()

"""``--workers N``: real server processes on one port, the parent that keeps
them running, and what they do together (metrics totals, systemd)."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import urllib.request
from typing import Dict, List

import pytest
from conftest import IO_TIMEOUT, append, connect, free_port, read_exactly, script, wait_for
from test_activation import activated_server

from tailsrv.logs import BatchingHandler, tag_lines
from tailsrv.ops.workers import worker_count

CONTENT = b"hello\nworld\n"


def worker_pids(log: str) -> Dict[int, int]:
    """Worker number -> pid of its latest start, from the parent's lines."""
    return {int(n): int(pid) for n, pid in
            re.findall(r"workers: worker (\d+) started \(pid (\d+)\)", log)}


def clients_on_every_worker(server, workers: int, content: bytes = CONTENT,
                            most: int = 200) -> List[socket.socket]:
    """Connect clients until each worker has logged one: the kernel, not we,
    chooses the worker of a connection."""
    clients: List[socket.socket] = []
    start = len(server.log)  # connections from now on
    for _ in range(most):
        clients.append(connect(server.port))
        assert read_exactly(clients[-1], len(content)) == content
        on = set(re.findall(r"INFO worker (\d+): \S+ connected", server.log[start:]))
        if len(on) == workers and len(clients) > workers:
            return clients
    raise AssertionError(f"{most} clients all went to workers {on}:\n{server.log}")


def test_worker_count():
    assert worker_count("3") == 3
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "x", ""):
        with pytest.raises(ValueError):
            worker_count(bad)


def test_tag_lines_tags_every_line_once(monkeypatch):
    """The worker's tag replaces the parent's, on our handler and the journal's."""
    batching, plain = BatchingHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    monkeypatch.setattr(logging.getLogger(), "handlers", [batching, plain])
    tag_lines("workers: ")
    tag_lines("worker 2: ")

    def record() -> logging.LogRecord:
        return logging.LogRecord("tailsrv", logging.INFO, __file__, 1, "hi %s", ("you",), None)
    plain.handle(record())
    assert plain.stream.getvalue() == "worker 2: hi you\n"
    assert batching.format(record()).endswith(" INFO worker 2: hi you")
    assert batching.formatter.line("INFO", "hi", 0.0).endswith(" INFO worker 2: hi")


def test_bad_workers_is_a_usage_error(logfile):
    proc = subprocess.run([script("tailsrv"), "-p", str(free_port()), "--workers", "0",
                           str(logfile)], capture_output=True, text=True, timeout=IO_TIMEOUT)
    assert proc.returncode == 2
    assert "invalid --workers '0'" in proc.stderr


def test_one_worker_is_the_single_process_server(logfile, start_server):
    server = start_server(logfile, "--workers", "1")
    with connect(server.port) as client:
        assert read_exactly(client, len(CONTENT)) == CONTENT
    assert "workers:" not in server.log and " worker 1: " not in server.log
    children = open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read()
    assert children.strip() == ""  # no parent: this process serves
    assert server.terminate() == 0


def test_every_client_of_every_worker_gets_every_byte(logfile, start_server):
    server = start_server(logfile, "--workers", "2")
    assert "all 2 workers ready" in server.log
    clients = clients_on_every_worker(server, 2)
    more = b"".join(b"line %d\n" % i for i in range(2000))
    append(logfile, more)
    for client in clients:
        assert read_exactly(client, len(more)) == more
        client.close()
    assert server.terminate() == 0
    log = server.log
    assert "workers: SIGTERM received; stopping the workers" in log
    for number in (1, 2):
        assert f"worker {number}: SIGTERM received; shutting down" in log
        assert f"workers: worker {number} stopped" in log
    for pid in worker_pids(log).values():  # no worker outlives the parent
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


def test_a_killed_worker_is_restarted_and_its_client_resumes(logfile, start_server, spawn,
                                                             tmp_path):
    server = start_server(logfile, "--workers", "2")
    out = tmp_path / "tscat.out"
    with open(out, "wb") as sink:
        tscat = spawn(["tscat", f"127.0.0.1:{server.port}"], stdout=sink)
    wait_for(lambda: out.read_bytes() == CONTENT)
    number = int(wait_for(lambda: re.findall(r"INFO worker (\d+): \S+ connected",
                                             server.log))[-1])
    pid = worker_pids(server.log)[number]
    os.kill(pid, signal.SIGKILL)
    server.wait_log(f"workers: worker {number} (pid {pid}) was killed by SIGKILL")
    wait_for(lambda: worker_pids(server.log)[number] != pid)
    wait_for(lambda: re.search(rf"worker {number} ready again", server.log))
    again = worker_pids(server.log)[number]  # killed soon again: a longer pause
    os.kill(again, signal.SIGKILL)
    server.wait_log(f"workers: worker {number} (pid {again}) was killed by SIGKILL")
    assert re.search(rf"pid {again}\) was killed by SIGKILL after [\d.]+ s; restarting it "
                     r"in 0\.2 s", server.log)
    wait_for(lambda: worker_pids(server.log)[number] != again)
    wait_for(lambda: server.log.count(f"worker {number} ready again") == 2)
    more = b"".join(b"after %d\n" % i for i in range(500))
    append(logfile, more)
    wait_for(lambda: out.read_bytes() == CONTENT + more)  # nothing lost, nothing twice
    # The new worker serves: connections reach both workers again.
    before = server.log.count(f"INFO worker {number}: ")
    clients = []
    wait_for(lambda: clients.append(connect(server.port)) or
             server.log.count(f"INFO worker {number}: ") > before + 2)
    for client in clients:
        assert read_exactly(client, len(CONTENT + more)) == CONTENT + more
        client.close()
    assert server.terminate() == 0
    tscat.terminate()


def test_a_worker_that_exits_by_itself_ends_the_server(tmp_path, start_server):
    path = tmp_path / "gone.log"
    path.write_bytes(CONTENT)
    server = start_server(path, "--workers", "2")
    path.unlink()  # every worker sees it and exits 0, as the single process does
    assert server.proc.wait(IO_TIMEOUT) == 0
    assert "workers: all workers stopped" in server.log
    assert "was killed" not in server.log


def metrics(port: int) -> Dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=IO_TIMEOUT) as r:
        text = r.read().decode()
    return {name: float(value) for name, value in
            re.findall(r"^(\S+) (\S+)$", text, re.MULTILINE)}


def test_metrics_are_totals_over_the_workers(logfile, start_server):
    port = free_port()
    server = start_server(logfile, "--workers", "2", "--metrics", f"127.0.0.1:{port}")
    clients = clients_on_every_worker(server, 2)
    size = len(CONTENT)
    for _ in range(6):  # any worker may answer the scrape: each must total
        found = metrics(port)
        assert found["tailsrv_workers_reporting"] == 2
        assert found["tailsrv_clients"] == len(clients)
        assert found["tailsrv_sent_bytes_total"] == size * len(clients)
        assert found["tailsrv_file_size_bytes"] == size  # the one file: not a sum
        # the probe of start_server counts too
        assert found["tailsrv_connections_accepted_total"] >= len(clients)
    for client in clients:
        client.close()
    assert server.terminate() == 0


def test_socket_activation_with_workers(tmp_path, logfile):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    log_path = tmp_path / "tailsrv.log"
    with activated_server(listener, "--workers", "2", str(logfile), log_path=log_path) as proc:
        wait_for(lambda: "all 2 workers ready" in log_path.read_text())
        on = set()
        for _ in range(200):
            with connect(port) as client:
                assert read_exactly(client, len(CONTENT)) == CONTENT
            on = set(re.findall(r"INFO worker (\d+): \S+ connected", log_path.read_text()))
            if on == {"1", "2"}:
                break
        assert on == {"1", "2"}, log_path.read_text()
        assert "systemd passed fd 3 (tailsrv.socket)" in log_path.read_text()
        proc.terminate()
        assert proc.wait(IO_TIMEOUT) == 0


def test_ready_once_every_worker_is_and_stopping(logfile, start_server, tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        path = str(tmp_path / "notify.sock")
        notify.bind(path)
        notify.settimeout(IO_TIMEOUT)
        server = start_server(logfile, "--workers", "3",
                              env={**os.environ, "NOTIFY_SOCKET": path})
        assert notify.recv(4096) == b"READY=1"
        assert "workers: all 3 workers ready" in server.log  # each said READY=1 to it
        for number in (1, 2, 3):
            server.wait_log(f"worker {number}: listening on")
        clients_on_every_worker(server, 3)
        assert server.terminate() == 0
        assert notify.recv(4096) == b"STOPPING=1"
        notify.settimeout(0.5)  # the workers' own notifications went to the parent
        with pytest.raises(socket.timeout):
            notify.recv(4096)


def test_http_and_follow_name_with_workers(tmp_path, logfile, start_server):
    """Each worker serves HTTP on the shared --http socket, and each follows
    PATH across a rotation: new clients, whichever worker takes them, get the
    new file."""
    http = free_port()
    server = start_server(logfile, "--workers", "2", "--follow-name",
                          "--http", f"127.0.0.1:{http}")
    for _ in range(4):
        request = urllib.request.Request(f"http://127.0.0.1:{http}/stream?start=0")
        with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
            assert response.read(len(CONTENT)) == CONTENT
    logfile.rename(tmp_path / "app.log.1")
    logfile.write_bytes(b"new file\n")
    for number in (1, 2):  # each worker follows the new file
        wait_for(lambda: server.log.count(f"worker {number}: following") == 2)
    clients = clients_on_every_worker(server, 2, content=b"new file\n")
    for client in clients:
        client.close()
    assert server.terminate() == 0


def test_max_clients_is_per_worker(logfile, start_server):
    server = start_server(logfile, "--workers", "2", "--max-clients", "1")
    clients, served = [], 0
    for _ in range(12):
        clients.append(connect(server.port))
        try:
            served += read_exactly(clients[-1], len(CONTENT)) == CONTENT
        except (EOFError, ConnectionResetError):
            pass
    assert 1 <= served <= 2  # one client per worker at most, the others refused
    wait_for(lambda: len(re.findall(r"INFO worker \d: \S+ connected", server.log)) == served)
    wait_for(lambda: server.log.count("refused: already serving 1 clients (--max-clients)")
             == len(clients) - served)
    for client in clients:
        client.close()
    assert server.terminate() == 0


def test_a_runtime_error_in_the_workers_is_one_line_and_status_1(tmp_path):
    proc = subprocess.run([script("tailsrv"), "-p", str(free_port()), "--workers", "2",
                           str(tmp_path / "no such dir" / "app.log")],
                          capture_output=True, text=True, timeout=IO_TIMEOUT)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"ERROR worker \d: cannot follow .*app.log", proc.stderr), proc.stderr
    assert "workers: all workers stopped" in proc.stderr


def test_workers_on_a_unix_socket(tmp_path, logfile):
    path = tmp_path / "tailsrv.sock"
    proc = subprocess.Popen([script("tailsrv"), "--bind", f"unix:{path}", "--workers", "2",
                             str(logfile)], stdin=subprocess.DEVNULL,
                            stderr=open(tmp_path / "log", "wb"))
    try:
        wait_for(lambda: "all 2 workers ready" in (tmp_path / "log").read_text())
        on = set()
        for _ in range(200):
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(IO_TIMEOUT)
                client.connect(str(path))
                client.sendall(b"0\n")
                assert read_exactly(client, len(CONTENT)) == CONTENT
            on = set(re.findall(r"INFO worker (\d): \S+ connected", (tmp_path / "log").read_text()))
            if on == {"1", "2"}:
                break
        assert on == {"1", "2"}
        proc.terminate()
        assert proc.wait(IO_TIMEOUT) == 0
        assert not path.exists()  # the parent removes the socket file it made
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(IO_TIMEOUT)

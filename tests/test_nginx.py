"""--http behind a real nginx (Debian's), with the configuration docs/http.md
gives: appends reach `curl -N` through the proxy within a second."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import IO_TIMEOUT, append, free_port, wait_for

#: The location block of docs/http.md, as a proxy in front of --http needs it.
LOCATION = """
        location / {
            proxy_pass http://127.0.0.1:%(upstream)d;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 24h;
        }
"""

CONFIG = """
error_log %(tmp)s/error.log;
pid %(tmp)s/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(tmp)s/body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
""" + LOCATION + """
    }
}
"""

#: An appended line reaches curl through the proxy within this many seconds.
LIVE = 1.0


def need(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing (CI installs it: .ci/run)")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture
def nginx(tmp_path):
    """start(upstream port) -> nginx's port; nginx killed by PID afterwards."""
    binary = need("nginx")
    procs = []

    def start(upstream: int) -> int:
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(CONFIG % {"tmp": tmp_path, "port": port, "upstream": upstream})
        proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(conf),
                                 "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_for(lambda: proc.poll() is None and _listening(port))
        return port

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(IO_TIMEOUT)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_appends_reach_curl_through_nginx(start_server, logfile, nginx, tmp_path):
    curl = need("curl")
    upstream = free_port()
    start_server(logfile, "--http", f"127.0.0.1:{upstream}")
    port = nginx(upstream)
    out = tmp_path / "curl.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([curl, "-sN", f"http://127.0.0.1:{port}/stream?start=0"],
                                stdout=sink, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: out.read_bytes() == b"hello\nworld\n")
        for i in range(3):
            line = f"appended {i}\n".encode()
            expected = out.read_bytes() + line
            append(logfile, line)
            began = time.monotonic()
            wait_for(lambda: out.read_bytes() == expected, timeout=IO_TIMEOUT)
            assert time.monotonic() - began < LIVE
        page = subprocess.run([curl, "-s", f"http://127.0.0.1:{port}/"], capture_output=True,
                              timeout=IO_TIMEOUT)
        assert b'<script src="viewer.js"' in page.stdout
    finally:
        proc.kill()
        proc.wait(IO_TIMEOUT)

"""A real gevent stack: gunicorn's gevent worker, monkey-patched as it always
is, runs a `TailServer` next to its web app (scripts/examples/gunicorn_embed.py):
the file streams and the page answers while the file grows, and SIGTERM ends
it all cleanly."""

import http.client
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, append, free_port, script, wait_for
from tailsrv.client import follow_lines

EXAMPLE = Path(__file__).parent.parent / "scripts" / "examples" / "gunicorn_embed.py"


def get_page(port: int) -> str:
    web = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
    try:
        web.request("GET", "/")
        response = web.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        web.close()


def started(proc: subprocess.Popen, log: Path) -> bool:
    assert proc.poll() is None, f"gunicorn exited early:\n{log.read_text()}"
    return "tailsrv: streaming" in log.read_text()


@pytest.mark.timeout(60)
def test_a_tail_server_in_a_gunicorn_gevent_worker(tmp_path, logfile):
    http_port, tail_port = free_port(), free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "TAILSRV_BIND": f"127.0.0.1:{tail_port}", "TAILSRV_FILE": str(logfile)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [script("gunicorn"), "-c", str(EXAMPLE), "-b", f"127.0.0.1:{http_port}",
             "--no-control-socket"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    try:
        wait_for(lambda: started(proc, log))
        lines = follow_lines(f"127.0.0.1:{tail_port}", reconnect=False)
        assert next(lines) == b"hello\n" and next(lines) == b"world\n"
        size = len(b"hello\nworld\n")
        for line in (b"one\n", b"two\n", b"three\n"):
            append(logfile, line)
            size += len(line)
            assert next(lines) == line
            assert get_page(http_port) == f"{logfile} {size} bytes, 1 clients\n"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(IO_TIMEOUT) == 0
        assert list(lines) == []  # the worker disconnected the client, cleanly
        output = log.read_text()
        assert "tailsrv: stopped" in output and "Shutting down: Master" in output
        assert "Traceback" not in output and "ERROR" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(IO_TIMEOUT)

"""The embedding example runs as a user would run it: two files and a web app
in one gevent process, stopped by SIGTERM; as it is, and monkey-patched first
(``python -m gevent.monkey``), as most gevent programs are."""

import http.client
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, append, free_port
from tailsrv.client import follow_lines

EXAMPLE = Path(__file__).parent.parent / "scripts" / "examples" / "gevent_embed.py"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("patch", [[], ["-m", "gevent.monkey"]], ids=["plain", "patched"])
def test_two_files_and_a_web_app_in_one_process(tmp_path, patch):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"first file\n")
    b.write_bytes(b"second file\n")
    http_port, port_a, port_b = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, *patch, str(EXAMPLE), "--host", "127.0.0.1", str(http_port),
         f"{port_a}={a}", f"{port_b}={b}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = proc.stdout.readline()
        assert started.startswith(b"serving")
        assert started.endswith(b" (monkey-patched)\n") == bool(patch)
        lines_a = follow_lines(f"127.0.0.1:{port_a}")
        lines_b = follow_lines(f"127.0.0.1:{port_b}")
        assert next(lines_a) == b"first file\n"
        assert next(lines_b) == b"second file\n"
        append(b, b"grows\n")
        assert next(lines_b) == b"grows\n"

        web = http.client.HTTPConnection("127.0.0.1", http_port, timeout=IO_TIMEOUT)
        web.request("GET", "/")
        response = web.getresponse()
        assert response.status == 200
        assert response.read().decode() == (f"{a} 11 bytes, 1 clients\n"
                                            f"{b} 18 bytes, 1 clients\n")
        web.close()

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=IO_TIMEOUT)
        assert (proc.returncode, out, err) == (0, b"stopped\n", b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=IO_TIMEOUT)

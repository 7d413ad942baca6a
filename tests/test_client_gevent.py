"""`follow` inside a gevent-monkey-patched program is cooperative: while it
waits on an idle server, or between reconnection attempts, other greenlets run.

The patching happens in a subprocess, so that this test run stays unpatched
(the library itself never patches)."""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import IO_TIMEOUT, free_port

PROGRAM = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()

    import json, sys
    import gevent
    from tailsrv.client import follow

    port, path, closed_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    got = []

    def reader():  # waits at the end of an idle file
        for chunk in follow(f"127.0.0.1:{port}", offset=12):
            got.append(chunk)
            return

    def retrier():  # nothing listens there: it sleeps between attempts
        for _ in follow(f"127.0.0.1:{closed_port}"):
            pass

    greenlets = [gevent.spawn(reader), gevent.spawn(retrier)]
    ticks = 0
    for _ in range(20):  # would never finish if follow() blocked the hub
        gevent.sleep(0.02)
        ticks += 1
    with open(path, "ab") as f:
        f.write(b"appended\\n")
    greenlets[0].join(timeout=10)
    retrying = not greenlets[1].dead
    gevent.killall(greenlets)
    print(json.dumps({"ticks": ticks, "got": b"".join(got).decode(), "retrying": retrying}))
""")


@pytest.mark.timeout(60)
def test_follow_is_cooperative_under_monkey_patching(logfile, start_server):
    server = start_server(logfile)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(server.port), str(logfile), str(free_port())],
        capture_output=True, timeout=6 * IO_TIMEOUT, check=True)
    assert json.loads(result.stdout) == {"ticks": 20, "got": "appended\n", "retrying": True}
    assert b"reconnecting in" in result.stderr  # the retrier's attempts were logged

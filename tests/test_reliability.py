"""A short version of each case of scripts/soak: small counts, a few seconds each.

The cases live in scripts/soaklib (run scripts/soak for the figures); here each
runs with counts small enough for the test suite, against its own real tailsrv
process (``python -m tailsrv`` on a free port, 127.0.0.1 only, killed by PID),
and a test fails when what its case must hold does not.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from tailsrv.protocol import BadHeader, HeaderReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from soaklib import (clients, crowd, faults, files, limits, load, report, rotation,  # noqa: E402
                     server)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(autouse=True)
def short_waits(monkeypatch):
    """A hung case fails within seconds rather than the soak's minute."""
    monkeypatch.setattr(limits, "WAIT", 15.0)


def failures(result, *tolerated: str) -> list:
    """What did not hold, bar failures naming one of ``tolerated``; the figures
    come along to make a failing assertion readable."""
    left = [f for f in result.failures if not any(t in f for t in tolerated)]
    return left and [result.name, *left, *(f"{k}: {v}" for k, v in result.figures.items())]


def test_verification_catches_a_wrong_byte(tmp_path):
    """The check every case relies on: a client that believes it started at byte
    1 while the server sent from 0 sees a mismatch."""
    file = files.GrowingFile(tmp_path / "app.log", 9)
    file.append(4096)
    tailsrv = server.ServerProcess(tmp_path, file.path)
    loop, tally = clients.Loop(), report.Tally()
    try:
        clients.Follower(loop, tailsrv.port, b"0\n", file, tally, 1).open()
        assert loop.run(lambda: tally["mismatches"], 10)
        assert tally["bytes verified"] == 0
    finally:
        loop.close()
        tailsrv.stop()
        file.close()


@pytest.mark.parametrize("kind", [k for k, (_, then) in faults.HOSTILE.items() if then == "wait"])
def test_hostile_payloads_are_bad_headers(kind):
    """What the hostile case sends and waits on is rejected by the parser, so a
    server that answered one with file data would be wrong, not the soak."""
    make, _ = faults.HOSTILE[kind]
    rng = random.Random(kind)
    for _ in range(200):
        with pytest.raises(BadHeader):
            HeaderReader().feed(make(rng))


def test_concurrent_followers(tmp_path):
    assert not failures(load.follow_clients(tmp_path, clients=300, rounds=3))


def test_a_crowd_over_client_processes_and_workers(tmp_path):
    """The crowd case, small: followers forked over two client processes on
    their own source addresses, tailsrv with two workers."""
    result = crowd.follow_crowd(tmp_path, clients=600, rounds=2)
    assert not failures(result)
    assert "127.0.0.2 to 127.0.0.3" in result.figures["client processes (source addresses)"]
    assert result.figures["server fds (all processes)"] > 600


@pytest.fixture(scope="module")
def fd_exhaustion(tmp_path_factory):
    return load.fd_exhaustion(tmp_path_factory.mktemp("fds"), clients=300, nofile=128,
                              settle=2.0, window=2.0)


def test_fd_exhaustion(fd_exhaustion):
    assert not failures(fd_exhaustion, "tracebacks")


def test_fd_exhaustion_logs_no_traceback(fd_exhaustion):
    assert not failures(fd_exhaustion)


def test_slowloris(tmp_path):
    assert not failures(load.slowloris(tmp_path, connections=200, header_timeout=1.0,
                                       baseline=0.5))


def test_hostile_headers(tmp_path):
    assert not failures(faults.hostile_headers(tmp_path, headers=2000, concurrency=50))


def test_churn(tmp_path):
    assert not failures(faults.churn(tmp_path, duration=4.0, rate=20e6, concurrency=8))


def test_kill_and_restart(tmp_path):
    assert not failures(faults.kill_and_restart(tmp_path, mirrors=3, kills=2, interval=0.7,
                                              rate=2e6))


def test_stalled_readers(tmp_path):
    assert not failures(load.stalled_readers(tmp_path, stalled=20, active=3,
                                             total=16 * report.MiB, rate=16e6))


def test_rotation(tmp_path):
    assert not failures(rotation.rotation(tmp_path, rotations=2, clients=3, interval=0.6,
                                          rate=2e6, grace=0.2))

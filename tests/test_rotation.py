"""Log rotation with the real logrotate, end to end: a writer appends numbered
lines at a steady rate, clients follow (tscat, tssync, the library; from the
start and from the end; one of them stopped through the rotations), logrotate
rotates the file several times, and afterwards every client's output is checked
line by line against what was written.

Lines are numbered and of varying length, so a byte taken from a wrong offset
shows up as a malformed line, a number out of order, or a gap.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from bisect import bisect_right
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import pytest

from conftest import (IO_TIMEOUT, assert_silent, connect, free_port, read_exactly,
                      read_until_closed, script, wait_for)
from test_metrics import MIB, scrape
from tailsrv.protocol import REFUSAL, digest

pytestmark = pytest.mark.timeout(60)

needs_logrotate = pytest.mark.skipif(
    not shutil.which("logrotate") and not os.environ.get("CI"),
    reason="logrotate is not installed (apt-get install logrotate)")

#: Lines the writer appends per second: steady, a few a millisecond.
RATE = 1000.0

#: Rotations per test.
ROTATIONS = 3

#: Seconds the old file must be quiet before its clients are closed: short, so
#: that a test takes a few seconds.
GRACE = "0.3"

CLIENT = Path(__file__).with_name("follow_client.py")


def line(n: int) -> bytes:
    """Line ``n`` as the writer writes it: its number and 0 to 12 letters."""
    return b"%08d %s\n" % (n, b"abcdefghijkl"[:n % 13])


def numbers(data: bytes) -> List[int]:
    """The line numbers in ``data``, which must consist of whole, well-formed lines."""
    assert not data or data.endswith(b"\n"), f"ends with a partial line: {data[-40:]!r}"
    result = []
    for text in data.split(b"\n")[:-1]:
        n = int(text[:8])
        assert text + b"\n" == line(n), f"a malformed line: {text[:60]!r}"
        result.append(n)
    return result


class Writer(threading.Thread):
    """Appends numbered lines to PATH at `RATE` through one open descriptor, as a
    logging program does; `reopen` makes it open PATH again (logrotate's
    ``postrotate`` signal, in create mode)."""

    def __init__(self, path: Path, first: int = 0) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.written = first
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.halt = threading.Event()
        self._reopen = threading.Event()
        self._reopened = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1 / RATE):
            if self._reopen.is_set():
                os.close(self.fd)
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._reopen.clear()
                self._reopened.set()
            os.write(self.fd, line(self.written))
            self.written += 1

    def wait_lines(self, count: int) -> None:
        """Until ``count`` more lines are written."""
        target = self.written + count
        wait_for(lambda: self.written >= target)

    def reopen(self) -> None:
        self._reopened.clear()
        self._reopen.set()
        assert self._reopened.wait(IO_TIMEOUT)

    def stop(self) -> int:
        """Stop writing; return how many lines were written in all."""
        self.halt.set()
        self.join(IO_TIMEOUT)
        os.close(self.fd)
        return self.written


class Rotator:
    """The real logrotate, forced, on a config and a state file of its own."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.config = path.parent / "logrotate.conf"
        self.state = path.parent / "logrotate.state"
        self.config.write_text(f"{path} {{\n    rotate 20\n    {mode}\n    nocompress\n"
                               f"    missingok\n}}\n")
        self.count = 0

    def rotate(self) -> None:
        subprocess.run(["logrotate", "-f", "-s", str(self.state), str(self.config)],
                       check=True, timeout=IO_TIMEOUT, capture_output=True)
        self.count += 1

    def files(self) -> List[Path]:
        """The rotated files, oldest first, then the current one."""
        return [Path(f"{self.path}.{n}") for n in range(self.count, 0, -1)] + [self.path]


class Clients:
    """The followers of one test: console scripts and library clients, each a
    process writing what it gets to a file of its own; all killed at the end."""

    def __init__(self, work: Path, address: str) -> None:
        self.work, self.address = work, address
        self.outputs: Dict[str, Path] = {}
        self.procs: Dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: List[str], output: Path) -> None:
        with open(self.work / f"{name}.out", "wb") as out, \
                open(self.work / f"{name}.err", "wb") as err:
            self.procs[name] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=err)
        self.outputs[name] = output

    def tscat(self, name: str, *options: str) -> None:
        self._start(name, [script("tscat"), *options, self.address], self.work / f"{name}.out")

    def tssync(self, name: str) -> None:
        mirror = self.work / f"{name}.mirror"
        self._start(name, [script("tssync"), self.address, str(mirror)], mirror)

    def library(self, name: str, how: str) -> None:
        output = self.work / f"{name}.lib"
        self._start(name, [sys.executable, str(CLIENT), self.address, how, str(output)], output)

    def output(self, name: str) -> bytes:
        path = self.outputs[name]
        return path.read_bytes() if path.exists() else b""

    def notices(self, name: str) -> List[Tuple[int, int]]:
        """A library client's notices: (its output's length then, the old position)."""
        text = Path(f"{self.outputs[name]}.notices").read_text()
        return [tuple(map(int, entry.split())) for entry in text.splitlines()]

    def stderr(self, name: str) -> str:
        return (self.work / f"{name}.err").read_text(errors="replace")

    def kill(self) -> None:
        for proc in self.procs.values():  # started by this test: ended by PID
            if proc.poll() is None:
                proc.kill()
            proc.wait(IO_TIMEOUT)


@pytest.fixture
def clients(tmp_path):
    made: List[Clients] = []

    def make(address: str) -> Clients:
        made.append(Clients(tmp_path, address))
        return made[-1]

    yield make
    for group in made:
        group.kill()


def check_epochs(got: List[int], starts: List[int], last: int, *, from_start: bool) -> None:
    """Check the line numbers a client got against the files ("epochs": file k
    holds the lines numbered from ``starts[k]`` to just before ``starts[k+1]``).

    Always: the lines of each file come as one run, in order, without a gap,
    and every run but a first one of a client that started mid-file begins at
    its file's first line (so no byte of one file was taken for another's), and
    the client has the very last line. (Where nothing may be lost, the tests
    compare bytes instead.)
    """
    assert got and got[-1] == last, f"the client does not have the last line {last}"
    runs: List[Tuple[int, List[int]]] = []
    for n in got:
        epoch = bisect_right(starts, n) - 1
        if runs and runs[-1][0] == epoch:
            runs[-1][1].append(n)
        else:
            runs.append((epoch, [n]))
    epochs = [epoch for epoch, _ in runs]
    assert epochs == sorted(set(epochs)), f"files out of order or repeated: {epochs}"
    if from_start:
        assert epochs[0] == 0
    for i, (epoch, run) in enumerate(runs):
        assert run == list(range(run[0], run[0] + len(run))), f"a gap or a repeat in file {epoch}"
        if i or from_start:
            assert run[0] == starts[epoch], f"file {epoch} not followed from its start"


def start_clients(clients: Clients) -> List[str]:
    """The followers every test runs: from the start and from the end, the
    console scripts and the library, and ``slow`` (a tscat the test stops)."""
    clients.tscat("tscat")
    clients.tssync("tssync")
    clients.library("library", "bytes")
    clients.tscat("tscat-end", "--lines", "-3")
    clients.library("library-end", "-3")
    clients.tscat("slow")
    names = list(clients.procs)
    wait_for(lambda: all(clients.output(name) for name in names))
    return names


FROM_THE_END = ("tscat-end", "library-end")


def received(clients: Clients, name: str) -> bytes:
    """All a client got: for tssync, its rotated mirrors, oldest first, then the mirror."""
    path = clients.outputs[name]
    older = sorted(path.parent.glob(path.name + ".[0-9]*"), key=lambda p: -int(p.suffix[1:]))
    return b"".join(p.read_bytes() for p in [*older, path] if p.exists())


def settle(clients: Clients, names: List[str], last: int) -> None:
    """Wait until every client has the last line written."""
    behind = lambda: [n for n in names if not received(clients, n).endswith(line(last))]  # noqa
    try:
        wait_for(lambda: not behind())
    except AssertionError:
        raise AssertionError(f"clients without the last line: {behind()}") from None


def logged(server, text: str, least: int) -> int:
    """How often the server's log says ``text``, once it says it ``least``
    times (lines go out as the event loop's turn ends)."""
    try:
        wait_for(lambda: server.log.count(text) >= least)
    except AssertionError:
        pass  # the caller's assertion says how often it was
    return server.log.count(text)


class Scene(NamedTuple):
    """What a rotation test ran: the server, the clients, logrotate, and how
    many lines were written in all."""

    server: object
    group: Clients
    names: List[str]
    rotator: Rotator
    total: int


def rotate_while_following(path: Path, start_server, clients, mode: str, *server_args: str,
                           after_each=lambda writer, server, group, names: None,
                           stop_slow: bool = True) -> Scene:
    """Write, start a server and the clients, rotate `ROTATIONS` times with
    logrotate in ``mode`` (calling ``after_each`` after each), with the client
    ``slow`` stopped through them all if ``stop_slow``; then wait until every
    client has the last line."""
    writer = Writer(path)
    writer.start()
    writer.wait_lines(200)
    server = start_server(path, *server_args)
    rotator = Rotator(path, mode)
    group = clients(f"127.0.0.1:{server.port}")
    names = start_clients(group)
    slow = group.procs["slow"]
    if stop_slow:
        slow.send_signal(signal.SIGSTOP)
    for _ in range(ROTATIONS):
        writer.wait_lines(100)
        rotator.rotate()
        after_each(writer, server, group, names)
    writer.wait_lines(100)
    slow.send_signal(signal.SIGCONT)
    total = writer.stop()
    settle(group, names, total - 1)
    return Scene(server, group, names, rotator, total)


def reopen_later(writer: Writer, *_) -> None:
    """What an application does in create mode: it goes on writing to the old
    file until logrotate's ``postrotate`` tells it to reopen its log."""
    writer.wait_lines(50)
    writer.reopen()


@needs_logrotate
def test_create_mode_with_follow_name_loses_nothing(tmp_path, start_server, clients):
    """logrotate's create mode (rename, new file) under --follow-name: every
    client gets every byte of every file, in order, once, including the lines
    appended to the old file after the rename; a client stopped through all the
    rotations too."""
    scene = rotate_while_following(tmp_path / "app.log", start_server, clients, "create",
                                   "--follow-name", "--rotation-grace", GRACE,
                                   after_each=reopen_later)
    group = scene.group
    files = [f.read_bytes() for f in scene.rotator.files()]
    expected = b"".join(files)
    assert numbers(expected) == list(range(scene.total))  # logrotate lost nothing either

    for name in scene.names:
        got = received(group, name)
        if name in FROM_THE_END:
            assert expected.endswith(got) and len(got) > len(expected) - len(files[0]), name
        else:
            assert got == expected, name
    mirrors = group.outputs["tssync"]
    for number, content in zip(range(ROTATIONS, 0, -1), files):
        assert Path(f"{mirrors}.{number}").read_bytes() == content
    sizes = [len(f) for f in files[:-1]]
    assert group.notices("library") == [(sum(sizes[:i + 1]), size) for i, size in enumerate(sizes)]
    assert [position for _, position in group.notices("library-end")] == sizes
    for name in ("tscat", "tscat-end", "slow"):
        assert group.stderr(name).count("tscat: file replaced; following the new file") \
            == ROTATIONS, group.stderr(name)
    assert group.stderr("tssync").count(f"moved {mirrors} to {mirrors}.1") == ROTATIONS
    assert scene.server.proc.poll() is None
    assert logged(scene.server, "refused (file replaced or truncated)",
                  ROTATIONS * len(scene.names)) == ROTATIONS * len(scene.names)
    assert "Traceback" not in scene.server.log


@needs_logrotate
def test_copytruncate_never_gives_a_wrong_byte(tmp_path, start_server, clients):
    """logrotate's copytruncate mode: the lines written between the copy and the
    truncation are in no file (logrotate's loss), and a client that was behind
    loses the rest of the old file, but no client ever gets a line twice, out of
    order, or from the wrong place of the new file."""
    scene = rotate_while_following(tmp_path / "app.log", start_server, clients, "copytruncate",
                                   "--follow-name", "--rotation-grace", GRACE)
    per_file = [numbers(f.read_bytes()) for f in scene.rotator.files()]
    for lines in per_file:
        assert lines == list(range(lines[0], lines[0] + len(lines)))
    assert per_file[-1][-1] == scene.total - 1
    for name in scene.names:
        check_epochs(numbers(received(scene.group, name)), [lines[0] for lines in per_file],
                     scene.total - 1, from_start=name not in FROM_THE_END)
    assert logged(scene.server, "was truncated from", ROTATIONS) == ROTATIONS
    assert "Traceback" not in scene.server.log


def restart_on_the_new_file(writer: Writer, server, group: Clients, names: List[str]) -> None:
    """What systemd's Restart=always does, once the server exited; then, as
    rotations are hours apart, wait until every client is on the new file."""
    assert server.proc.wait(IO_TIMEOUT) == 0  # it saw the file move, and exited
    writer.reopen()
    in_the_new_file = writer.written + 1
    server.restart()
    wait_for(lambda: all(line(in_the_new_file) in received(group, n) for n in names))


@needs_logrotate
def test_a_restarted_server_refuses_to_resume_a_replaced_file(tmp_path, start_server, clients):
    """No --follow-name, as under systemd with Restart=always: the server exits
    when logrotate moves the file and is started again on the new one. Clients
    lose the end of the old file (it is no longer served), but their resume is
    refused and they follow the new file from its start, never from the middle."""
    scene = rotate_while_following(tmp_path / "app.log", start_server, clients, "create",
                                   after_each=restart_on_the_new_file, stop_slow=False)
    files = [f.read_bytes() for f in scene.rotator.files()]
    for name in scene.names:
        check_epochs(numbers(received(scene.group, name)), [numbers(f)[0] for f in files],
                     scene.total - 1, from_start=name not in FROM_THE_END)
    mirrors = scene.group.outputs["tssync"]
    for number, content in zip(range(ROTATIONS, 0, -1), files):
        assert content.startswith(Path(f"{mirrors}.{number}").read_bytes())
    assert mirrors.read_bytes() == files[-1]
    assert logged(scene.server, "refused (file replaced or truncated)",
                  ROTATIONS * len(scene.names)) >= ROTATIONS * len(scene.names)
    assert "Traceback" not in scene.server.log


def test_a_resume_proof_on_the_wire(logfile, start_server):
    """A proof that holds gets the announcement and what follows; one that does
    not, or for a position past the end, gets the refusal and the file from 0."""
    server = start_server(logfile)  # b"hello\nworld\n"
    with connect(server.port, b"6#6:%s\n" % digest(b"hello\n")) as good:
        assert read_exactly(good, 8) == b"6\nworld\n"
    for header in (b"12#6:%s\n" % digest(b"HELLO\n"), b"13#6:%s\n" % digest(b"world\n")):
        with connect(server.port, header) as refused:
            assert read_exactly(refused, len(REFUSAL) + 12) == REFUSAL + b"hello\nworld\n"
    assert logged(server, "refused (file replaced or truncated), starting at byte 0", 2) == 2


def test_follow_name_when_the_file_is_deleted_and_created_again(tmp_path, start_server):
    """Deleted: the old file's clients get what is still written to it, new
    clients wait for the new file, and the old clients are closed once the old
    file is quiet; a resume then gets the new file from its start."""
    path = tmp_path / "app.log"
    path.write_bytes(b"old\n")
    server = start_server(path, "--follow-name", "--rotation-grace", GRACE)
    old = connect(server.port, b"0\n")
    assert read_exactly(old, 4) == b"old\n"
    with open(path, "ab", buffering=0) as writer:
        path.unlink()
        server.wait_log("was deleted; its clients finish it")
        waiting = connect(server.port, b"0\n")
        writer.write(b"still old\n")
        assert read_exactly(old, 10) == b"still old\n"
    assert read_until_closed(old) == b""
    assert_silent(waiting)
    path.write_bytes(b"new\n")
    assert read_exactly(waiting, 4) == b"new\n"
    with connect(server.port, b"14#14:%s\n" % digest(b"old\nstill old\n")) as resumed:
        assert read_exactly(resumed, len(REFUSAL) + 4) == REFUSAL + b"new\n"
    assert server.proc.poll() is None


def test_metrics_count_the_clients_of_the_old_file(tmp_path, start_server):
    """--follow-name: while the old file still has clients, the metrics count
    them beside the new file's (bytes sent, the slowest client's lag)."""
    path = tmp_path / "app.log"
    path.write_bytes(b"old\n")
    metrics_port = free_port()
    server = start_server(path, "--follow-name", "--rotation-grace", "60",
                          "--metrics", f"127.0.0.1:{metrics_port}")
    old = socket.socket()  # reads no more than the first line: falls behind
    old.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    old.settimeout(IO_TIMEOUT)
    old.connect(("127.0.0.1", server.port))
    old.sendall(b"0\n")
    with old, open(path, "ab", buffering=0) as writer:
        assert read_exactly(old, 4) == b"old\n"
        path.unlink()
        server.wait_log("was deleted; its clients finish it")
        path.write_bytes(b"new file\n")
        with connect(server.port, b"0\n") as new:
            assert read_exactly(new, 9) == b"new file\n"
            wait_for(lambda: (m := scrape(metrics_port))[("tailsrv_clients",)] == 2
                     and m[("tailsrv_sent_bytes_total",)] == 4 + 9)
            writer.write(b"x" * (8 * MIB))
            lag = wait_for(lambda: scrape(metrics_port)[("tailsrv_slowest_client_lag_bytes",)])
            assert 0 < lag < 8 * MIB

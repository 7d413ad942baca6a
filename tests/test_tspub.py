"""tspub against real nats-server processes: every byte of a growing file in the
stream exactly once, in order, through SIGKILLs, tailsrv restarts, logrotate,
a cluster node dying, and a second tspub; bad input in one line."""

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, append, script, wait_for
from jetstream_servers import (files, nats_cluster, nats_server, read_stream,  # noqa: F401
                               stream_files, stream_info)

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).parent.parent / "scripts" / "examples" / "jetstream_consumer.py"

#: Seconds to wait for the stream to catch up with the file.
CATCH_UP = 30


class Writer:
    """A thread appending numbered lines to a file, a few at a time, until stopped."""

    def __init__(self, path, pause: float = 0.002) -> None:
        self.path, self.pause, self.count = path, pause, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(4)
        while not self.stop.is_set() and self.count < 200_000:
            lines = b"".join(b"line %d %s\n" % (self.count + i, b"x" * rng.randint(0, 120))
                             for i in range(rng.randint(1, 20)))
            append(self.path, lines)
            self.count += 1
            time.sleep(self.pause)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(IO_TIMEOUT)


@pytest.fixture
def publishing(start_server, logfile, spawn, nats_server):
    """publishing(*tspub_options, nats_config="", tailsrv=()) -> (nats-server,
    tailsrv, tspub): the three started, the file published to logs.app."""
    def start(*options: str, nats_config: str = "", tailsrv=()):
        nats = nats_server(nats_config)
        server = start_server(logfile, *tailsrv)
        return nats, server, tspub(spawn, server, nats.url, "logs.app", *options)
    return start


def tspub(spawn, server, nats_url: str, subject: str = "logs.app", *options: str):
    return spawn(["tspub", *options, f"127.0.0.1:{server.port}", nats_url, subject])


def wait_stream(urls: str, expected, subject: str = "logs.app", timeout: float = CATCH_UP):
    """Wait until the stream's files are ``expected``, then check it strictly."""
    try:
        wait_for(lambda: stream_files(urls, subject) == expected, timeout=timeout, interval=0.3)
    finally:
        got = files(read_stream(urls, subject))
        assert [len(file) for file in got] == [len(file) for file in expected]
        assert got == expected


def stop(proc) -> bytes:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=IO_TIMEOUT)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    return err


@pytest.mark.parametrize("mode", ["lines", "chunks"])
def test_every_byte_once_in_order(logfile, publishing, mode):
    nats, _, publisher = publishing("--records", mode)
    writer = Writer(logfile)
    time.sleep(1)
    writer.finish()
    wait_stream(nats.url, [logfile.read_bytes()])
    messages = read_stream(nats.url, "logs.app")
    assert [m["id"] for m in messages] == \
        [f"logs.app/0/{m['offset']}-{m['offset'] + len(m['data'])}" for m in messages]
    if mode == "lines":
        assert all(m["data"].endswith(b"\n") and b"\n" not in m["data"][:-1] for m in messages)
    else:
        assert len(messages) < logfile.read_bytes().count(b"\n")
    err = stop(publisher)
    assert b"created stream logs_app for logs.app" in err


def test_the_example_consumer_prints_the_file(logfile, publishing):
    nats, _, publisher = publishing()
    wait_stream(nats.url, [b"hello\nworld\n"])
    consumer = subprocess.Popen([sys.executable, str(EXAMPLE), nats.url, "logs.app"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert consumer.stdout.read(12) == b"hello\nworld\n"
        append(logfile, b"live\n")
        assert consumer.stdout.read(5) == b"live\n"
    finally:
        consumer.kill()
        consumer.wait(IO_TIMEOUT)
    stop(publisher)


def test_a_token_from_a_file(logfile, publishing, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    nats, server, publisher = publishing("--token-file", str(token),
                                         nats_config='authorization { token: "s3cret" }')
    wait_stream(nats.url.replace("//", "//s3cret@"), [logfile.read_bytes()])
    stop(publisher)
    token.write_text("wrong\n")
    result = run(f"127.0.0.1:{server.port}", nats.url, "logs.app", "--token-file", str(token))
    one_line(result, 1, f"{nats.url}: cannot connect to NATS: ")


def test_an_unfinished_line_waits_for_its_end(logfile, publishing):
    nats, _, publisher = publishing()
    wait_stream(nats.url, [b"hello\nworld\n"])
    append(logfile, b"half a ")
    time.sleep(1)
    assert files(read_stream(nats.url, "logs.app")) == [b"hello\nworld\n"]
    append(logfile, b"line\n")
    wait_stream(nats.url, [b"hello\nworld\nhalf a line\n"])
    stop(publisher)


def test_a_long_line_arrives_whole_through_continuations(logfile, publishing):
    long_line = bytes(random.Random(1).choice(b"abcdef") for _ in range(1 << 20)) + b"\n"
    append(logfile, long_line + b"short\n")
    nats, _, publisher = publishing(nats_config="max_payload: 65536")
    wait_stream(nats.url, [logfile.read_bytes()])
    messages = read_stream(nats.url, "logs.app")
    parts = [m for m in messages if m["offset"] >= 12 and m["offset"] < 12 + len(long_line)]
    assert len(parts) > 16 and all(len(m["data"]) <= 65536 for m in parts)
    assert [m["continues"] for m in parts] == [True] * (len(parts) - 1) + [False]
    assert b"".join(m["data"] for m in parts) == long_line
    stop(publisher)


def test_sigkill_at_20_random_moments(start_server, logfile, spawn, nats_server):
    nats = nats_server()
    server = start_server(logfile)
    writer = Writer(logfile, pause=0.005)
    rng = random.Random(20)
    try:
        for _ in range(20):
            publisher = tspub(spawn, server, nats.url, "logs.app", "--records",
                              rng.choice(["lines", "chunks"]))
            time.sleep(rng.uniform(0.2, 1.2))  # from its start to well into publishing
            publisher.kill()
            publisher.wait(IO_TIMEOUT)
    finally:
        writer.finish()
    assert len(read_stream(nats.url, "logs.app")) > 0
    publisher = tspub(spawn, server, nats.url)
    wait_stream(nats.url, [logfile.read_bytes()])
    err = stop(publisher)
    assert b"stream logs_app ends at generation 0 byte" in err


def test_nats_server_killed_and_restarted(logfile, publishing):
    nats, _, publisher = publishing()
    writer = Writer(logfile, pause=0.002)
    try:
        wait_for(lambda: stream_files(nats.url, "logs.app"), timeout=CATCH_UP)
        nats.kill()
        time.sleep(3)
        nats.start()
    finally:
        writer.finish()
    wait_stream(nats.url, [logfile.read_bytes()], timeout=60)
    err = stop(publisher).decode()
    assert err.count("JetStream does not answer") == 1, err
    assert "JetStream answers again: publishing from generation 0 byte" in err


def test_sigterm_while_nats_is_away_ends_quietly(logfile, publishing):
    nats, _, publisher = publishing()
    wait_stream(nats.url, [logfile.read_bytes()])
    nats.kill()
    append(logfile, b"not published yet\n")
    time.sleep(2)  # nats-py notices a closed connection at once
    err = stop(publisher)  # status 0, no traceback
    assert b"JetStream does not answer (lost the connection to NATS" in err


def test_ctrl_c_exits_130(logfile, publishing):
    nats, _, publisher = publishing()
    wait_stream(nats.url, [logfile.read_bytes()])
    publisher.send_signal(signal.SIGINT)
    _, err = publisher.communicate(timeout=IO_TIMEOUT)
    assert publisher.returncode == 130 and b"Traceback" not in err, err


def test_tailsrv_restarted_then_the_file_rotated(logfile, publishing, tmp_path):
    nats, server, publisher = publishing("--records", "chunks",
                                         tailsrv=["--follow-name", "--rotation-grace", "0.5"])
    append(logfile, b"before the restart\n")
    wait_stream(nats.url, [logfile.read_bytes()])
    server.restart()
    append(logfile, b"after the restart\n")
    wait_stream(nats.url, [logfile.read_bytes()])
    if shutil.which("logrotate") is None and not os.environ.get("CI"):
        pytest.skip("logrotate is not installed")
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{logfile} {{\n  rotate 3\n  create\n}}\n")
    append(logfile, b"the last line of the old file, without a newline")
    subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(config)], check=True,
                   timeout=IO_TIMEOUT)
    old = logfile.with_name("app.log.1").read_bytes()
    append(logfile, b"a new file\n")
    wait_stream(nats.url, [old, logfile.read_bytes()])
    err = stop(publisher)
    assert b"file replaced: publishing the new one as generation 1" in err


def test_a_file_replaced_while_no_tspub_ran_is_the_next_generation(logfile, publishing, spawn):
    nats, server, publisher = publishing(tailsrv=["--follow-name"])
    wait_stream(nats.url, [logfile.read_bytes()])
    stop(publisher)
    old = logfile.read_bytes()
    logfile.rename(logfile.with_name("app.log.1"))
    logfile.write_bytes(b"the new file\n")
    server.wait_log("was moved")
    publisher = tspub(spawn, server, nats.url)
    wait_stream(nats.url, [old, b"the new file\n"])
    err = stop(publisher)
    assert b"stream logs_app ends at generation 0 byte 12 (sequence 2)" in err


def test_a_three_node_cluster_loses_the_streams_leader(start_server, logfile, spawn,
                                                       nats_cluster):
    urls = ",".join(node.url for node in nats_cluster)
    server = start_server(logfile)
    publisher = tspub(spawn, server, urls, "logs.app", "--replicas", "3")
    writer = Writer(logfile, pause=0.01)
    try:
        info = wait_for(lambda: _led(stream_info(urls, "logs_app")), timeout=CATCH_UP)
        leader = next(node for node in nats_cluster if node.name == info.cluster.leader)
        leader.kill()
        others = ",".join(node.url for node in nats_cluster if node is not leader)
        # tspub goes on once the two others have elected a new leader
        wait_for(lambda: (stream_info(others, "logs_app") or info).state.last_seq >
                 info.state.last_seq + 100, timeout=CATCH_UP, interval=0.3)
        leader.start()
        time.sleep(1)
    finally:
        writer.finish()
    wait_stream(urls, [logfile.read_bytes()], timeout=60)
    wait_stream(leader.url, [logfile.read_bytes()], timeout=60)  # the node caught up
    stop(publisher)


def test_a_cluster_without_quorum_at_start_is_waited_for(start_server, logfile, spawn,
                                                        nats_cluster, tmp_path):
    """Two nodes of three down when tspub starts: JetStream is there but cannot
    answer ("temporarily unavailable", or no answer at all). tspub says so
    once and waits, and publishes once the nodes are back; only a server
    without JetStream at all is an error."""
    urls = ",".join(node.url for node in nats_cluster)
    server = start_server(logfile)
    for node in nats_cluster[1:]:
        node.kill()
    errors = tmp_path / "tspub.err"
    with open(errors, "wb") as sink:
        publisher = spawn(["tspub", "--replicas", "3", f"127.0.0.1:{server.port}", urls,
                           "logs.app"], stderr=sink)
    try:
        wait_for(lambda: b"JetStream does not answer" in errors.read_bytes()
                 or publisher.poll() is not None, timeout=CATCH_UP)
        time.sleep(3)  # more than the first pauses: still waiting, not gone
        assert publisher.poll() is None, errors.read_bytes()
    finally:
        for node in nats_cluster[1:]:
            node.start()
    append(logfile, b"hello\n")
    wait_stream(urls, [logfile.read_bytes()], timeout=60)
    publisher.send_signal(signal.SIGTERM)
    assert publisher.wait(IO_TIMEOUT) == 0, errors.read_bytes()
    err = errors.read_bytes()
    assert err.count(b"JetStream does not answer") == 1 and b"Traceback" not in err, err


def _led(info):
    """``info`` when it names the stream's leader, else None."""
    return info if info is not None and info.cluster and info.cluster.leader else None


def two_publishers(start_server, logfile, spawn, urls, *options):
    server = start_server(logfile)
    writer = Writer(logfile, pause=0.01)
    try:
        first = tspub(spawn, server, urls, "logs.app", *options)
        second = tspub(spawn, server, urls, "logs.app", *options)
        wait_for(lambda: first.poll() is not None or second.poll() is not None, timeout=60,
                 interval=0.1)
    finally:
        writer.finish()
    loser, winner = (first, second) if first.poll() is not None else (second, first)
    _, err = loser.communicate(timeout=IO_TIMEOUT)
    assert loser.returncode == 1
    last = err.decode().strip().splitlines()[-1]
    assert "is another tspub publishing logs.app?" in last or \
        "another publisher stored" in last, err
    wait_stream(urls, [logfile.read_bytes()], timeout=60)
    stop(winner)


@pytest.mark.parametrize("mode", ["lines", "chunks"])
def test_two_tspub_never_both_publish(start_server, logfile, spawn, nats_server, mode):
    two_publishers(start_server, logfile, spawn, nats_server().url, "--records", mode)


def test_two_tspub_never_both_publish_in_a_cluster(start_server, logfile, spawn, nats_cluster):
    urls = ",".join(node.url for node in nats_cluster)
    two_publishers(start_server, logfile, spawn, urls, "--replicas", "3", "--records", "chunks")


@pytest.mark.parametrize("where", ["one node", "three replicas"])
def test_a_rivals_message_between_two_pipelined_ones_stops_the_rest(request, where):
    """The narrow case of two tspub, made to happen: a second publisher's first
    message is stored just before two pipelined messages of the first, cut
    differently. The first one's messages already in flight must be refused,
    not stored after the rival's (which would repeat bytes), and the first
    publisher must find the conflict."""
    from tailsrv.client.publisher import Conflict, Options, Publisher
    from tailsrv.client.records import Record

    if where == "one node":
        urls, replicas = request.getfixturevalue("nats_server")().url, 1
    else:
        urls, replicas = ",".join(node.url for node in request.getfixturevalue("nats_cluster")), 3
    options = Options("unused:0", urls.split(","), "logs.app", "logs_app", replicas, "chunks")

    async def scene():
        first, rival = Publisher(options), Publisher(options)
        for publisher in (first, rival):
            publisher.failed = asyncio.Event()
            await publisher._connect()
            await publisher._ensure_stream()
        try:
            await first._store_alone(Record(0, 0, b"one\n"))
            place, _ = await rival._stream_end()
            rival.acked, rival.next_sequence = place, place.sequence + 1
            await rival._store_alone(Record(0, 4, b"two\nthree\n"))  # the rival's cut
            await first._send(Record(0, 4, b"two\n"))  # refused: the sequence is taken
            await first._send(Record(0, 8, b"three\n"))  # in flight: must be refused too
            with pytest.raises(Conflict):
                await asyncio.wait_for(first._settle(), IO_TIMEOUT * 2)
        finally:
            for publisher in (first, rival):
                await publisher.nc.close()

    asyncio.run(scene())
    messages = read_stream(urls, "logs.app")
    assert [m["data"] for m in messages] == [b"one\n", b"two\nthree\n"]
    assert files(messages) == [b"one\ntwo\nthree\n"]


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([script("tspub"), *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess, status: int, text: str) -> None:
    err = result.stderr.decode()
    assert result.returncode == status, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if text in line]
    assert len(errors) == 1 and errors[0].startswith("tspub: "), err


def test_help_and_version():
    result = run("--help")
    assert result.returncode == 0
    for words in ("Usage:", "--stream NAME", "--records MODE", "--creds FILE", "Exit status"):
        assert words in result.stdout.decode()
    assert run("--version").stdout.startswith(b"tspub ")


@pytest.mark.parametrize("args, text", [
    (["localhost:1", "http://localhost:4222", "a"], "expected nats://HOST:PORT"),
    (["localhost:1", "nats://localhost", "a"], "expected nats://HOST:PORT"),
    (["localhost:1", "nats://u:secret@localhost:4222", "a"], "in a file"),
    (["localhost:1", "nats://localhost:4222", "logs.*"], "invalid subject 'logs.*'"),
    (["localhost:1", "nats://localhost:4222", "logs.>"], "invalid subject 'logs.>'"),
    (["localhost:1", "nats://localhost:4222", "logs..app"], "invalid subject"),
    (["--records", "words", "localhost:1", "nats://localhost:4222", "a"], "--records 'words'"),
    (["--replicas", "9", "localhost:1", "nats://localhost:4222", "a"], "--replicas 9"),
    (["--stream", "a.b", "localhost:1", "nats://localhost:4222", "a"], "stream name 'a.b'"),
    (["localhost", "nats://localhost:4222", "a"], "expected HOST:PORT"),
])
def test_bad_usage_exits_2(args, text):
    one_line(run(*args), 2, text)


def test_unreachable_nats_exits_1(start_server, logfile):
    server = start_server(logfile)
    one_line(run(f"127.0.0.1:{server.port}", "nats://127.0.0.1:1", "logs.app"), 1,
             "nats://127.0.0.1:1: cannot connect to NATS")


def test_a_stream_with_another_subject_exits_1(start_server, logfile, nats_server):
    nats = nats_server()
    server = start_server(logfile)
    result = _after_stream(nats.url, "shared", ["other.subject"],
                           lambda: run(f"127.0.0.1:{server.port}", nats.url, "logs.app",
                                       "--stream", "shared"))
    one_line(result,
             1, "stream shared covers other.subject: tspub needs a stream of its own")


def test_a_full_stream_is_a_clear_error(start_server, logfile, nats_server):
    nats = nats_server()
    server = start_server(logfile)
    result = _after_stream(nats.url, "logs_app", ["logs.app"],
                           lambda: run(f"127.0.0.1:{server.port}", nats.url, "logs.app"),
                           max_msgs=1, discard="new")
    one_line(result, 1, "stream logs_app refused the message at generation 0 byte 6")


def _after_stream(url, name, subjects, then, **config):
    """Create a stream with nats-py, then call ``then``."""
    import asyncio

    import nats
    from nats.js.api import StreamConfig

    async def create():
        nc = await nats.connect([url])
        await nc.jetstream().add_stream(StreamConfig(name=name, subjects=subjects, **config))
        await nc.close()

    asyncio.run(create())
    return then()

"""tscat and tssync reading a file back out of JetStream (``nats://HOST:PORT/SUBJECT``),
against real nats-server, tailsrv and tspub processes: byte-exact, following live,
the last lines, a new generation, a mirror resumed after SIGKILL and rotated; bad
input in one line. The pure rule (`replay`) is tested without sockets at the end."""

import random
import signal
import subprocess
import time

import pytest
from conftest import IO_TIMEOUT, append, wait_for
from jetstream_servers import nats_server  # noqa: F401
from test_tspub import CATCH_UP, Writer, publishing, stop, wait_stream  # noqa: F401

from tailsrv.client.replay import Gap, Part, Replay, parse_stream_address

pytestmark = pytest.mark.timeout(120)


def reader(spawn, tmp_path, name: str, *args: str):
    """A tscat or tssync whose output goes to a file; (process, output path)."""
    out = tmp_path / f"{name}.out"
    with open(out, "wb") as sink:
        return spawn([name, *args], stdout=sink), out


@pytest.mark.parametrize("mode", ["lines", "chunks"])
def test_tscat_prints_the_file_and_follows_it(logfile, publishing, spawn, tmp_path, mode):
    nats, _, publisher = publishing("--records", mode)
    wait_stream(nats.url, [logfile.read_bytes()])
    tscat, out = reader(spawn, tmp_path, "tscat", f"{nats.url}/logs.app")
    wait_for(lambda: out.read_bytes() == logfile.read_bytes(), timeout=CATCH_UP)
    append(logfile, b"one more line\nand another\n")
    wait_for(lambda: out.read_bytes() == logfile.read_bytes(), timeout=CATCH_UP)
    stop(tscat)
    stop(publisher)


@pytest.mark.parametrize("mode", ["lines", "chunks"])
def test_tscat_starts_at_the_last_lines(logfile, publishing, spawn, tmp_path, mode):
    logfile.write_bytes(b"".join(b"line %d\n" % n for n in range(500)))
    nats, _, publisher = publishing("--records", mode)
    wait_stream(nats.url, [logfile.read_bytes()])
    tscat, out = reader(spawn, tmp_path, "tscat", "--lines", "-3", f"{nats.url}/logs.app")
    wait_for(lambda: out.read_bytes() == b"line 497\nline 498\nline 499\n", timeout=CATCH_UP)
    append(logfile, b"line 500\n")
    wait_for(lambda: out.read_bytes().endswith(b"line 499\nline 500\n"), timeout=CATCH_UP)
    stop(tscat)
    stop(publisher)


def test_tscat_says_when_the_file_was_replaced(logfile, publishing, spawn, tmp_path):
    nats, server, publisher = publishing(tailsrv=["--follow-name", "--rotation-grace", "0.3"])
    old = logfile.read_bytes()
    wait_stream(nats.url, [old])
    tscat, out = reader(spawn, tmp_path, "tscat", f"{nats.url}/logs.app")
    wait_for(lambda: out.read_bytes() == old, timeout=CATCH_UP)
    logfile.rename(logfile.with_name("app.log.1"))
    logfile.write_bytes(b"the new file\n")
    wait_for(lambda: out.read_bytes() == old + b"the new file\n", timeout=CATCH_UP)
    err = stop(tscat)
    assert b"file replaced; following the new file" in err
    stop(publisher)


def test_tssync_mirrors_exactly_through_sigkills_and_a_rotation(logfile, publishing, spawn,
                                                                 tmp_path):
    nats, server, publisher = publishing(tailsrv=["--follow-name", "--rotation-grace", "0.3"])
    mirror = tmp_path / "mirror.log"
    address = f"{nats.url}/logs.app"
    wait_stream(nats.url, [logfile.read_bytes()])
    writer = Writer(logfile)
    rng = random.Random(7)
    try:
        for _ in range(5):
            tssync = spawn(["tssync", address, str(mirror)])
            time.sleep(rng.uniform(0.05, 0.5))
            tssync.send_signal(signal.SIGKILL)
            tssync.wait(IO_TIMEOUT)
    finally:
        writer.finish()
    wait_stream(nats.url, [logfile.read_bytes()])
    tssync = spawn(["tssync", address, str(mirror)])
    wait_for(lambda: mirror.exists() and mirror.read_bytes() == logfile.read_bytes(),
             timeout=CATCH_UP)  # exists: the killed ones may not have made it yet
    old = logfile.read_bytes()
    logfile.rename(logfile.with_name("app.log.1"))
    logfile.write_bytes(b"the new file\n")
    wait_for(lambda: mirror.exists() and mirror.read_bytes() == b"the new file\n",
             timeout=CATCH_UP)
    assert mirror.with_name("mirror.log.1").read_bytes() == old
    stop(tssync)
    stop(publisher)


def run(*args: str) -> subprocess.CompletedProcess:
    from conftest import script
    return subprocess.run([script(args[0]), *args[1:]], capture_output=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess, status: int, text: bytes) -> None:
    assert result.returncode == status, result.stderr
    assert text in result.stderr.splitlines()[0]
    assert b"Traceback" not in result.stderr


def test_bad_input_is_one_line(nats_server, tmp_path):  # noqa: F811
    nats = nats_server()
    one_line(run("tscat", "nats://127.0.0.1/logs.app"), 2, b"expected nats://HOST:PORT/SUBJECT")
    one_line(run("tscat", f"{nats.url}/logs.*"), 2, b"without wildcards")
    one_line(run("tssync", f"{nats.url}/", str(tmp_path / "m")), 2, b"expected a subject")
    assert not (tmp_path / "m").exists()  # a usage error touches no file
    one_line(run("tscat", f"{nats.url}/logs.none"), 1, b"no JetStream stream holds the subject")
    nats.kill()
    one_line(run("tscat", f"{nats.url}/logs.app"), 1, b"cannot connect to NATS")


def test_replay_gives_each_byte_once():
    replay = Replay(generation=2, position=5)
    assert replay.feed(Part(2, 0, b"abcdefg")) == (False, b"fg")  # started inside it
    assert replay.feed(Part(2, 7, b"hi")) == (False, b"hi")
    assert replay.feed(Part(2, 7, b"hi")) == (False, b"")  # a duplicate
    assert replay.feed(Part(1, 0, b"old")) == (False, b"")  # an older file
    assert replay.feed(Part(3, 0, b"new")) == (True, b"new")
    with pytest.raises(Gap, match="lacks bytes 3 to 5 of file 3"):
        replay.feed(Part(3, 5, b"x"))
    with pytest.raises(Gap, match="lacks the start of file 4"):
        replay.feed(Part(4, 2, b"x"))


def test_stream_addresses():
    assert parse_stream_address("nats://h:4222/logs.app") == ("nats://h:4222", "logs.app")
    for bad in ("nats://h/logs", "http://h:1/logs", "nats://u:p@h:1/logs", "nats://h:1/a..b",
                "nats://h:1/a/b", "nats://h:1/>"):
        with pytest.raises(ValueError):
            parse_stream_address(bad)

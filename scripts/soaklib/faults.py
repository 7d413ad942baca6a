"""The fault cases: hostile headers, churn with verification, kill -9 and restart."""

from __future__ import annotations

import filecmp
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

from tailsrv.wrongport import http_answer, http_request, stream_port_text

from . import limits
from .clients import Client, Follower, Loop, Spawner
from .files import GrowingFile
from .report import MiB, Result, Tally, mib, spread
from .rig import FLAT_SLACK, Rig

#: Seconds a mirror waits before reconnecting to a server that is down.
RECONNECT = 0.05


_GRAMMAR = frozenset(b"0123456789+-lL? \t\r\x0b\x0c\n#:abcdefABCDEF")
_OUTSIDE = bytes(b for b in range(256) if b not in _GRAMMAR)
_NOT_NUMBERS = [b"GET / HTTP/1.1\r\n", b"1.5\n", b"0x10\n", b"1_000\n", "\u0661\u0662\n".encode(),
                b"--1\n", b"10ll\n", b"5??\n", b"1e3\n", b"- 1\n", b"1 2\n", b"l\n", b"?\n"]


def _digits(rng: random.Random, low: int, high: int) -> bytes:
    return str(rng.randrange(1, 10)).encode() + bytes(rng.choices(b"0123456789",
                                                                 k=rng.randrange(low, high)))


#: Bad headers: name -> (payload maker, what the client does after sending it:
#: wait for the server to close, close itself, or reset).
HOSTILE = {
    "random bytes": (lambda r: bytes([r.choice(_OUTSIDE)]) + r.randbytes(r.randrange(120)) + b"\n",
                     "wait"),
    "huge number": (lambda r: r.choice([b"", b"-", b"+"]) + _digits(r, 19, 70) + b"\n", "wait"),
    "out of range": (lambda r: b"%d\n" % r.choice([2**63 + r.randrange(10**6),
                                                   -2**63 - 1 - r.randrange(10**6)]), "wait"),
    "no newline": (lambda r: r.randbytes(r.randrange(65, 4000)).replace(b"\n", b"x"), "wait"),
    "NUL bytes": (lambda r: r.choice([b"\0" * r.randrange(1, 60), b"12\x0034", b"\x001"]) + b"\n",
                  "wait"),
    "empty line": (lambda r: r.choice([b"\n", b" \r\n", b"\t\n", b"\r\n"]), "wait"),
    "not a number": (lambda r: r.choice(_NOT_NUMBERS), "wait"),
    "partial, then close": (lambda r: _digits(r, 0, 10), "close"),
    "partial, then RST": (lambda r: _digits(r, 0, 10), "reset"),
    "RST at once": (lambda r: b"", "reset"),
}


class Hostile(Client):
    """Sends one bad header; must get no file data, only a closed connection
    (an HTTP request line, only the stream port's HTTP 400 before the close:
    `tailsrv.wrongport`, byte for byte)."""

    def __init__(self, loop: Loop, port: int, kind: str, payload: bytes, then: str,
                 tally: Tally, ended: Callable[[Client], None]) -> None:
        super().__init__(loop, port, payload, ended)
        self.kind, self.then, self.tally = kind, then, tally
        self.answer = (http_answer(payload, 400, stream_port_text(None))
                       if http_request(payload) else b"")
        self.received = b""

    def on_open(self) -> None:
        if self.then != "wait":
            self.tally[self.kind] += 1
            self.close(reset=self.then == "reset")

    def on_data(self, data: bytes) -> None:
        self.received += data
        if self.answer.startswith(self.received):
            return
        self.tally["file data sent to a bad header"] += 1
        self.tally.note(f"{self.kind}: {self.header[:40]!r} got {data[:20]!r}")
        self.close()

    def on_lost(self, why: str) -> None:
        if self.connected:
            self.tally[self.kind] += 1
        else:
            self.tally["connect failed"] += 1
            self.tally.note(f"connect: {why}")


def hostile_headers(work: Path, headers: int = 100000, concurrency: int = 200,
                    duration: float = 600.0) -> Result:
    """Bad headers of every kind, as fast as the server takes them."""
    result = Result(f"hostile headers: {headers:,} bad headers",
                    "zero crashes, each rejected with a log line, server memory flat")
    kinds = list(HOSTILE)
    samples: List[int] = []
    with Rig(work, result, "hostile", 4, 4096) as rig:
        server, loop, tally = rig.server, rig.loop, rig.tally

        def make(spawner: Spawner) -> Client:
            kind = kinds[spawner.started % len(kinds)]
            payload, then = HOSTILE[kind]
            if spawner.started == headers // 10:
                samples.append(server.memory())
            return Hostile(loop, server.port, kind, payload(rig.rng), then, tally, spawner.ended)

        began = time.monotonic()
        spawner = Spawner(loop, make, headers, concurrency, duration)
        spawner.fill()
        loop.run(spawner.done, duration + limits.WAIT, tick=0.2)
        elapsed = time.monotonic() - began
        wanted = spawner.started - tally["connect failed"]
        logged = lambda: server.log_count(" rejected: ", " gone before sending a header")
        deadline = time.monotonic() + limits.WAIT
        while logged() < wanted and time.monotonic() < deadline and server.alive:
            time.sleep(0.5)
        rss_end = server.memory() if server.alive else 0
        rss_start = samples[0] if samples else rss_end
        sent = sum(tally[k] for k in kinds)
        result.figures.update({
            "bad headers sent": f"{sent:,} in {elapsed:.0f} s ({sent / elapsed:,.0f}/s)",
            **{f"- {k}": f"{tally[k]:,}" for k in kinds},
            "connects that failed": tally["connect failed"],
            "rejected with a log line": f"{logged():,}",
            "file data sent to a bad header": tally["file data sent to a bad header"],
            f"server RSS after {headers // 10:,} / at the end":
                f"{mib(rss_start)} / {mib(rss_end)} ({(rss_end - rss_start) / 1024:+,.0f} KiB)",
        })
        result.check(sent == spawner.started, f"{spawner.started - sent} headers not sent")
        result.check(logged() == wanted, f"{logged()} log lines for {wanted} bad headers")
        result.check(not tally["file data sent to a bad header"], "file data sent to a bad header")
        result.check(rss_end - rss_start <= FLAT_SLACK, "server memory grew")
    return result


def _line_start(file: GrowingFile, position: int) -> Optional[str]:
    if position > file.size:
        return "past the end"
    if position and file.read(position - 1, 1) != b"\n":
        return "not at the start of a line"
    return None


def _churn_client(spawner: Spawner, loop: Loop, port: int, file: GrowingFile, tally: Tally,
                  rng: random.Random) -> Client:
    """A client at a random position, reading a random amount, leaving by FIN or RST."""
    size = file.size
    want = rng.choice([0, rng.randrange(1, 1 << 16), rng.randrange(1 << 16, 4 * MiB),
                       rng.randrange(4 * MiB, 32 * MiB)])
    reset = rng.random() < 0.5
    kind = rng.choice(["offset", "past the end", "-bytes", "-bytes?", "lines?", "-lines?"])
    tally[f"{kind} / {'RST' if reset else 'FIN'}"] += 1
    common = dict(want=want, reset=reset, ended=spawner.ended)
    if kind in ("offset", "past the end"):
        start = rng.randrange(size + 1) if kind == "offset" else size + rng.randrange(4 * MiB)
        return Follower(loop, port, b"%d\n" % start, file, tally, start, **common)
    if kind == "-bytes":
        back = rng.randrange(16 * MiB)
        common["want"] = want and max(want, Follower.LOCATE)
        return Follower(loop, port, b"-%d\n" % back, file, tally, back=back, **common)
    # The server resolves a negative position against its own idea of the size:
    # at least ``floor`` (see Follower.on_open), at most the file's size.
    if kind == "-bytes?":
        back = rng.randrange(16 * MiB)

        def check(position: int, floor: int) -> Optional[str]:
            good = max(0, floor - back) <= position <= max(0, file.size - back)
            return None if good else f"outside [{max(0, floor - back)}, {file.size - back}]"
        return Follower(loop, port, b"-%d?\n" % back, file, tally, check=check, **common)
    if kind == "lines?":
        count = rng.randrange(file.lines_before(min(size, 32 * MiB)) + 1)

        def check(position: int, _floor: int) -> Optional[str]:
            problem = _line_start(file, position)
            if problem is None and file.lines_before(position) != count:
                problem = f"{file.lines_before(position)} lines before it"
            return problem
        return Follower(loop, port, b"%dl?\n" % count, file, tally, check=check, **common)
    count = rng.randrange(1, 20000)

    def check(position: int, floor: int) -> Optional[str]:
        """Right for some size the server may have seen, from ``floor`` to now."""
        problem = _line_start(file, position)
        if problem is None and file.lines_after(position, max(position, floor)) > count:
            problem = f"more than {count} lines after it"
        if problem is None and position and file.lines_after(position, file.size) < count:
            problem = f"fewer than {count} lines after it"
        return problem
    return Follower(loop, port, b"-%dl?\n" % count, file, tally, check=check, **common)


def churn(work: Path, duration: float = 120.0, rate: float = 50e6,
          concurrency: int = 32) -> Result:
    """Clients coming and going at random positions while the file grows fast."""
    result = Result(f"churn with verification: {duration:g} s at {rate / 1e6:g} MB/s",
                    "every byte every client received equals the file at that offset: "
                    "0 mismatches")
    with Rig(work, result, "churn", 5, 8 * MiB) as rig:
        file, server, loop, tally = rig.file, rig.server, rig.loop, rig.tally
        spawner = Spawner(loop, lambda s: _churn_client(s, loop, server.port, file, tally,
                                                        rig.rng), 10**9, concurrency, duration)
        writer = rig.write(rate, duration)
        spawner.fill()
        loop.run(lambda: spawner.exhausted, duration + limits.WAIT, tick=0.2)
        writer.stop()
        loop.run(spawner.done, 3)  # those waiting past the end are cut below
        cut = spawner.running
        kinds = sorted(k for k in tally if " / " in k)
        result.figures.update({
            "file written": f"{mib(file.size)} at {writer.achieved}",
            "connections": f"{spawner.started:,}",
            **{f"- {k}": f"{tally[k]:,}" for k in kinds},
            "still waiting past the end when the writer stopped": cut,
            "bytes received and verified": f"{tally['bytes verified']:,}",
            "mismatches": tally["mismatches"],
            "connections ended by the server": tally["ended by the server"],
        })
        result.check(spawner.started > 0, "no client connected")
        result.check(not tally["mismatches"], f"{tally['mismatches']} mismatches")
        result.check(not tally["ended by the server"], "the server ended connections")
    file.path.unlink()  # gigabytes
    return result


class Mirror(Client):
    """A resuming client: appends what it gets to a file and, when the connection
    drops, reconnects asking for the byte after the last one it has."""

    def __init__(self, loop: Loop, port: int, path: Path) -> None:
        super().__init__(loop, port, b"0\n")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.offset = 0
        self.reconnects = 0
        self.running = True

    def on_data(self, data: bytes) -> None:
        os.write(self.fd, data)
        self.offset += len(data)

    def on_lost(self, why: str) -> None:
        if self.running:
            self.reconnects += 1
            self.header = b"%d\n" % self.offset
            self.loop.later(RECONNECT, self.open)

    def stop(self) -> None:
        self.running = False
        self.close()
        os.close(self.fd)


def kill_and_restart(work: Path, mirrors: int = 20, kills: int = 3, interval: float = 2.0,
                     rate: float = 4e6) -> Result:
    """``kill -9`` the server again and again while mirrors follow it."""
    tool = shutil.which("tssync", path=os.path.dirname(sys.executable))
    result = Result(f"kill -9 and restart: {kills} kills, {mirrors} mirrors",
                    "the mirrors end byte-identical to the file: nothing lost, "
                    "nothing duplicated")
    paths = [work / f"mirror-{i}.log" for i in range(mirrors)]
    tools: List[subprocess.Popen] = []
    clients: List[Mirror] = []
    with Rig(work, result, "mirrored", 6, MiB) as rig:
        file, server, loop = rig.file, rig.server, rig.loop
        if tool:
            with open(work / "tssync.log", "ab") as log:
                tools = [subprocess.Popen([tool, f"127.0.0.1:{server.port}", str(p)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                         for p in paths]
        else:
            clients = [Mirror(loop, server.port, p) for p in paths]
            for client in clients:
                client.open()
        writer = rig.write(rate, interval * (kills + 1))
        downtime = []
        for _ in range(kills):
            loop.idle(interval)
            server.kill9()
            began = time.monotonic()
            loop.idle(0.2)
            server.start(wait=False)
            loop.run(lambda: all(c.connected for c in clients) if clients else
                     server.log_count("listening on port") >= server.starts, limits.WAIT)
            downtime.append(time.monotonic() - began)
        loop.run(lambda: not writer.is_alive(), limits.WAIT + interval)
        writer.stop()
        sizes = lambda: [p.stat().st_size if p.exists() else 0 for p in paths]
        loop.run(lambda: all(s >= file.size for s in sizes()), limits.WAIT)
        identical = sum(1 for p in paths if p.exists() and filecmp.cmp(p, file.path, shallow=False))
        result.figures.update({
            "mirror": f"tssync ({tool})" if tool else "resuming test client (tssync not installed)",
            "file written": f"{mib(file.size)} at {writer.achieved}",
            "kill -9 / restarts": f"{kills} / {server.starts - 1}",
            "down from kill to every mirror reconnected" if clients else "down until listening":
                spread(downtime),
            "reconnects": sum(c.reconnects for c in clients) if clients else "n/a",
            "mirrors byte-identical": f"{identical} / {mirrors}",
            "mirror sizes (min / max) vs file":
                f"{min(sizes()):,} / {max(sizes()):,} vs {file.size:,}",
        })
        result.check(identical == mirrors, f"{mirrors - identical} mirrors differ from the file")
        for client in clients:
            client.stop()
    for proc in tools:  # started by this case: ended by PID
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return result

"""The load cases: many followers, too few descriptors, slowloris, stalled readers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

from . import limits
from .clients import Client, Follower, Loop, Progress, open_in_waves
from .files import GrowingFile
from .report import MiB, Result, Tally, mib, ms, spread
from .rig import FLAT_SLACK, Rig

#: Share of one core above which a server with nothing to do counts as busy-looping.
BUSY_CPU = 0.5


def follow_clients(work: Path, clients: int = 19000, rounds: int = 10,
                   append: int = 4096, initial: int = 65536) -> Result:
    """Many concurrent followers, each checked to get every appended byte in order."""
    result = Result(f"{clients:,} concurrent followers",
                    "every client receives every appended byte, in order; server alive; "
                    "peak RSS reported")
    with Rig(work, result, "follow", 1, initial) as rig:
        file, server, loop, tally = rig.file, rig.server, rig.loop, rig.tally
        rss_before = server.memory()
        progress = Progress(file.size)
        followers = [Follower(loop, server.port, b"0\n" if i % 2 else b"%d\n" % initial,
                              file, tally, 0 if i % 2 else initial, progress=progress)
                     for i in range(clients)]
        connect = open_in_waves(loop, followers, tally)
        caught_up = loop.run(lambda: progress.reached >= clients, limits.WAIT)
        rss_connected = server.memory()
        delivery = []
        for _ in range(rounds if caught_up else 0):
            file.append(append)
            progress.next(file.size)
            if not loop.run(lambda: progress.reached >= clients, limits.WAIT, tick=0.01):
                break
            delivery.append(progress.latency)
        complete = sum(1 for f in followers if f.offset == file.size)
        result.figures["clients connected"] = (f"{sum(f.connected for f in followers):,} "
                                               f"in {connect:.1f} s")
        delivered(result, tally, clients, complete, f"{rounds} x {append} B after {initial} B",
                  delivery)
        result.figures.update({
            "server RSS idle / with clients": f"{mib(rss_before)} / {mib(rss_connected)}",
            "RSS per client": f"{(rss_connected - rss_before) / clients / 1024:.1f} KiB",
            "server peak RSS (VmHWM)": mib(server.memory("VmHWM")),
            "server fds": server.fds(),
        })
    return result


def delivered(result: Result, tally: Tally, clients: int, complete: int, appends: str,
              delivery: List[float]) -> None:
    """The figures and checks of a case of followers (`follow_clients`, the
    crowd case): ``complete`` of ``clients`` got every byte in order."""
    result.figures.update({
        "appends": appends,
        "clients with every byte, in order": f"{complete:,} / {clients:,}",
        "bytes verified": f"{tally['bytes verified']:,}",
        "mismatches": tally["mismatches"],
        "connections ended by the server": tally["ended by the server"],
        "append to last client": spread(delivery),
    })
    result.check(complete == clients, f"{clients - complete} clients missed bytes")
    result.check(not tally["mismatches"], f"{tally['mismatches']} mismatches")


def fd_exhaustion(work: Path, clients: int = 1000, nofile: int = 256,
                  settle: float = 5.0, window: float = 5.0) -> Result:
    """More clients than the server has descriptors for."""
    result = Result(f"fd exhaustion: {clients:,} clients, server under ulimit -n {nofile}",
                    "no crash, no busy loop (CPU reported), held clients keep streaming, "
                    "new clients served again once others leave")
    with Rig(work, result, "fds", 2, 4096, nofile=nofile) as rig:
        file, server, loop, tally = rig.file, rig.server, rig.loop, rig.tally
        progress = Progress(file.size)
        followers = [Follower(loop, server.port, b"0\n", file, tally, 0, progress=progress)
                     for _ in range(clients)]
        open_in_waves(loop, followers, tally)
        loop.idle(settle)
        held = [f for f in followers if f.offset >= file.size]
        waiting = [f for f in followers if f.offset < file.size and f.sock is not None]
        cpu = server.cpu()
        loop.idle(window)
        busy = (server.cpu() - cpu) / window
        file.append(1024)
        progress.next(file.size)
        loop.run(lambda: progress.reached >= len(held), limits.WAIT)
        streaming = sum(1 for f in held if f.offset == file.size)
        for follower in held:
            follower.close()
        # A client gone while the file is idle is noticed when the server sends
        # to it: the first send draws the peer's RST, the second fails on it.
        for _ in range(2):
            file.append(1024)
            loop.idle(0.5)
        progress.next(file.size)
        released = time.monotonic()
        expected = min(len(waiting), len(held))
        served = lambda: sum(1 for f in waiting if f.offset == file.size)
        loop.run(lambda: served() >= expected, limits.WAIT)
        result.figures.update({
            "served at once (held)": len(held),
            "waiting in the backlog": len(waiting),
            "server CPU while saturated": f"{busy:.0%} of a core over {window:g} s",
            "held clients that got the next append": f"{streaming} / {len(held)}",
            "waiting clients served after the held ones left":
                f"{served()} / {expected} expected, within {time.monotonic() - released:.1f} s",
            "'Too many open files' in the log": server.log_count("Too many open files"),
            "mismatches": tally["mismatches"],
        })
        result.check(len(held) > 0, "no client was served at all")
        result.check(busy < BUSY_CPU, f"server busy at {busy:.0%} CPU while saturated")
        result.check(streaming == len(held), "held clients stopped streaming")
        result.check(served() >= expected, "waiting clients were not served after others left")
        result.check(not tally["mismatches"], f"{tally['mismatches']} mismatches")
    return result


class Slow(Client):
    """A slowloris connection: a header begun (or not) and never finished."""

    def __init__(self, loop: Loop, port: int, kind: int, tally: Tally,
                 closed_after: List[float]) -> None:
        super().__init__(loop, port, b"" if kind == 0 else b"1")
        self.kind, self.tally, self.closed_after = kind, tally, closed_after

    def on_open(self) -> None:
        if self.kind == 2:  # trickle: one more digit a second
            self.loop.later(1.0, self.trickle)

    def trickle(self) -> None:
        if self.sock is not None:
            self.send(b"1")
            if self.sock is not None:
                self.loop.later(1.0, self.trickle)

    def on_data(self, data: bytes) -> None:
        self.tally["data sent to an unfinished header"] += 1
        self.close()

    def on_lost(self, why: str) -> None:
        self.closed_after.append(time.monotonic() - self.opened)


class Prober:
    """A well-behaved client every ``every`` s: ``-N`` header, time to its N bytes."""

    def __init__(self, loop: Loop, port: int, file: GrowingFile, tally: Tally,
                 every: float, size: int = 4096) -> None:
        self.loop, self.port, self.file, self.tally = loop, port, file, tally
        self.every, self.size = every, size
        self.latencies: List[float] = []
        self.running = True
        self.loop.later(0, self.probe)

    def probe(self) -> None:
        if not self.running:
            return
        self.tally["probes"] += 1
        Follower(self.loop, self.port, b"-%d\n" % self.size, self.file, self.tally,
                 self.file.size - self.size, want=self.size, ended=self._ended).open()
        self.loop.later(self.every, self.probe)

    def _ended(self, follower: Client) -> None:
        if follower.received == self.size:
            self.latencies.append(time.monotonic() - follower.opened)

    def take(self) -> List[float]:
        taken, self.latencies = self.latencies, []
        return taken


def slowloris(work: Path, connections: int = 5000, header_timeout: float = 10.0,
              baseline: float = 2.0, every: float = 0.1) -> Result:
    """Connections that never finish a header, next to well-behaved clients."""
    result = Result(f"slowloris: {connections:,} unfinished headers",
                    "each closed after --header-timeout; well-behaved clients served all "
                    "along with normal latency")
    with Rig(work, result, "slow", 3, 65536, "--header-timeout", f"{header_timeout:g}") as rig:
        file, server, loop, tally = rig.file, rig.server, rig.loop, rig.tally
        prober = Prober(loop, server.port, file, tally, every)
        loop.idle(baseline)
        before = prober.take()
        closed_after: List[float] = []
        slow = [Slow(loop, server.port, i % 3, tally, closed_after) for i in range(connections)]
        open_in_waves(loop, slow, tally)
        rss = server.memory()
        loop.run(lambda: len(closed_after) >= connections, header_timeout + limits.WAIT)
        prober.running = False
        loop.run(lambda: tally["probes"] == len(prober.latencies) + len(before), limits.WAIT)
        during = prober.take()
        rejected = server.log_count("no complete header within")
        result.figures.update({
            "header timeout": f"{header_timeout:g} s",
            "closed by the server": f"{len(closed_after):,} / {connections:,}",
            "closed after": spread(closed_after, lambda s: f"{s:.2f} s"),
            "log lines 'no complete header'": f"{rejected:,}",
            "data sent to unfinished headers": tally["data sent to an unfinished header"],
            "probe (-4096 header to last byte) before": spread(before),
            "probe during the attack": spread(during),
            "probes served": f"{len(before) + len(during)} / {tally['probes']}",
            "server RSS with the connections open": mib(rss),
        })
        result.check(len(closed_after) == connections, "unfinished headers left open")
        result.check(not closed_after or min(closed_after) >= header_timeout * 0.95,
                     "connections closed before the header timeout")
        result.check(rejected == connections, f"{rejected} log lines for {connections} rejections")
        result.check(not tally["data sent to an unfinished header"],
                     "file data sent without a header")
        result.check(len(before) + len(during) == tally["probes"],
                     "well-behaved clients not served")
        result.check(not tally["mismatches"], f"{tally['mismatches']} mismatches")
    return result


class Stalled(Client):
    """Connects, sends its header, and never reads again."""

    rcvbuf = 64 * 1024  # the kernel's buffers are not what is measured here
    listen = 0


def stalled_readers(work: Path, stalled: int = 200, active: int = 10, total: int = 256 * MiB,
                    rate: float = 32e6) -> Result:
    """Clients that stop reading, next to clients that keep up."""
    result = Result(f"{stalled:,} clients that stop reading, {active} that read",
                    "the server's memory stays flat (no per-client buffering), "
                    "other clients unaffected")
    with Rig(work, result, "stalled", 7, 65536) as rig:
        file, server, loop, tally = rig.file, rig.server, rig.loop, rig.tally
        readers = [Follower(loop, server.port, b"0\n", file, tally, 0) for _ in range(active)]
        others: List[Client] = [Stalled(loop, server.port, b"0\n") for _ in range(stalled)]
        open_in_waves(loop, readers + others, tally)
        caught_up = lambda: all(r.offset >= file.size for r in readers)
        loop.run(caught_up, limits.WAIT)
        loop.idle(1.0)
        rss_before = server.memory()
        lags: List[float] = []

        def sample() -> None:
            if writer.is_alive():
                lags.append(file.size - min(r.offset for r in readers))
                loop.later(0.1, sample)
        writer = rig.write(rate, total / rate)
        sample()
        loop.run(lambda: not writer.is_alive(), total / rate + limits.WAIT)
        writer.stop()
        stopped = time.monotonic()
        loop.run(caught_up, limits.WAIT, tick=0.01)
        drain = time.monotonic() - stopped
        rss_after = server.memory()
        complete = sum(1 for r in readers if r.offset == file.size)
        result.figures.update({
            "appended": f"{mib(writer.written)} at {writer.achieved}",
            "readers with every byte": f"{complete} / {active}",
            "slowest reader behind the file, sampled every 0.1 s": spread(lags, mib),
            "readers done after the last append": ms(drain),
            "mismatches": tally["mismatches"],
            "server RSS before / after": f"{mib(rss_before)} / {mib(rss_after)} "
                                         f"({(rss_after - rss_before) / 1024:+,.0f} KiB)",
            "stalled connections still open": sum(1 for c in others if c.sock is not None),
        })
        result.check(complete == active, "readers missed bytes")
        result.check(not tally["mismatches"], f"{tally['mismatches']} mismatches")
        result.check(rss_after - rss_before <= FLAT_SLACK, "server memory grew")
    return result

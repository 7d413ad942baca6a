"""The follow case at a scale one process cannot hold: ``crowd``.

One process may open 20,000 descriptors on the machine this was written on,
so the `load.follow_clients` case (one client process, one server process)
stops short of that. Here the followers are split over as many client
processes as they need (`CLIENTS_PER_PROCESS` each, forked), each connecting
from its own loopback address (127.0.0.2 and up) so that no address runs out
of ephemeral ports (about 28,000 each), and tailsrv runs with ``--workers``
(`CLIENTS_PER_WORKER` each). Each follower checks every byte against the file,
as in the follow case; the soak process appends and times each append to the
last client of every process (CLOCK_MONOTONIC is the same in every process).

Not in the default run: named with ``--only crowd`` (``--clients N``, default
100,000). With ``--server`` (the yardstick) the workers option is not passed.
"""

from __future__ import annotations

import math
import os
import time
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import List, Tuple

from . import limits
from .clients import Client, Follower, Loop, Progress, open_in_waves
from .files import GrowingFile
from .load import delivered
from .report import Result, Tally, mib
from .rig import Rig
from .server import ServerProcess

#: Followers per client process: below its 20,000 descriptors, with room.
CLIENTS_PER_PROCESS = 16000

#: Followers per tailsrv worker: below a worker's 20,000 descriptors, with room
#: for the kernel placing more on one worker than another.
CLIENTS_PER_WORKER = 14000


def _part(conn: Connection, port: int, file: GrowingFile, count: int, initial: int,
          source: str) -> None:
    """One client process: ``count`` followers from ``source``, answering the
    soak's commands (`follow_crowd`) until told to end."""
    Client.source = source  # this process's every connection
    loop, tally = Loop(), Tally()
    progress = Progress(initial)
    followers = [Follower(loop, port, b"0\n" if i % 2 else b"%d\n" % initial, file,
                                tally, 0 if i % 2 else initial, progress=progress)
                 for i in range(count)]
    took = open_in_waves(loop, followers, tally)
    caught_up = loop.run(lambda: progress.reached >= count, limits.WAIT)
    conn.send((sum(f.connected for f in followers), took, caught_up))
    goal = initial
    while loop.run(conn.poll, limits.WAIT * 5, tick=0.01):
        command, goal = conn.recv()
        if command == "end":
            break
        progress.next(goal)
        conn.send("set")
        loop.run(lambda: progress.reached >= count or conn.poll(), limits.WAIT, tick=0.005)
        conn.send((progress.reached, progress.last))
    complete = sum(1 for f in followers if f.offset == goal)
    conn.send((complete, dict(tally), tally.notes))
    loop.close()


def _fork_part(*args) -> Tuple[int, Connection]:
    ours, theirs = Pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            ours.close()
            _part(theirs, *args)
            status = 0
        finally:
            os._exit(status)
    theirs.close()
    return pid, ours


def tree(pid: int) -> List[int]:
    """``pid`` and its descendants (a tailsrv's workers)."""
    pids, todo = [], [pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                todo += map(int, children.read().split())
        except FileNotFoundError:
            continue
    return pids


def tree_figure(server: ServerProcess, file: str, key: str) -> int:
    """``key`` of /proc/PID/``file`` (kB) summed over the server's processes, in bytes."""
    total = 0
    for pid in tree(server.proc.pid):
        try:
            with open(f"/proc/{pid}/{file}") as source:
                total += sum(int(line.split()[1]) for line in source
                             if line.startswith(key + ":"))
        except FileNotFoundError:
            continue
    return total * 1024


def tree_cpu(server: ServerProcess) -> float:
    """User + system CPU seconds of the server's processes."""
    total = 0
    for pid in tree(server.proc.pid):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tree_fds(server: ServerProcess) -> int:
    total = 0
    for pid in tree(server.proc.pid):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except FileNotFoundError:
            continue
    return total


def follow_crowd(work: Path, clients: int = 100000, rounds: int = 10, append: int = 4096,
                 initial: int = 65536) -> Result:
    """``clients`` concurrent followers over several client processes and
    tailsrv workers, each checked to get every appended byte in order."""
    processes = max(2, math.ceil(clients / CLIENTS_PER_PROCESS))
    workers = max(2, math.ceil(clients / CLIENTS_PER_WORKER))
    args = () if ServerProcess.template else ("--workers", str(workers))
    result = Result(f"{clients:,} concurrent followers from {processes} client processes"
                    + (f", tailsrv --workers {workers}" if args else ""),
                    "every client receives every appended byte, in order; server alive; "
                    "memory per follower and append-to-last-client reported")
    with Rig(work, result, "crowd", 1, initial, *args) as rig:
        file, server, tally = rig.file, rig.server, rig.tally
        time.sleep(1.0)  # every worker listening, not only the first
        pss_before = tree_figure(server, "smaps_rollup", "Pss")
        shares = [clients // processes + (k < clients % processes) for k in range(processes)]
        parts = [_fork_part(server.port, file, n, initial, f"127.0.0.{2 + k}")
                 for k, n in enumerate(shares)]
        try:
            deadline = limits.WAIT * (clients / 5000 + 2)
            hellos = [conn.recv() if conn.poll(deadline) else (0, 0.0, False)
                      for _pid, conn in parts]
            connected = sum(h[0] for h in hellos)
            pss_connected = tree_figure(server, "smaps_rollup", "Pss")
            rss_connected = tree_figure(server, "status", "VmRSS")
            delivery: List[float] = []
            cpu = tree_cpu(server)
            for _ in range(rounds if all(h[2] for h in hellos) else 0):
                goal = file.size + append
                for _pid, conn in parts:
                    conn.send(("goal", goal))
                if not all(conn.poll(limits.WAIT) and conn.recv() == "set" for _pid, conn in parts):
                    break
                file.append(append)
                appended = time.monotonic()
                answers = [conn.recv() if conn.poll(limits.WAIT * 2) else (0, 0.0)
                           for _pid, conn in parts]
                if sum(a[0] for a in answers) < clients:
                    break
                delivery.append(max(a[1] for a in answers) - appended)
            cpu = tree_cpu(server) - cpu
            ends = []
            for _pid, conn in parts:
                conn.send(("end", file.size))
            for _pid, conn in parts:
                ends.append(conn.recv() if conn.poll(limits.WAIT) else (0, {}, ["no answer"]))
        finally:
            for pid, conn in parts:
                conn.close()
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        complete = sum(e[0] for e in ends)
        for _complete, counts, notes in ends:
            tally.update(counts)
            for note in notes:
                tally.note(note)
        result.figures.update({
            "client processes (source addresses)": f"{processes} (127.0.0.2 to "
                                                   f"127.0.0.{1 + processes})",
            "clients connected": f"{connected:,} in {max(h[1] for h in hellos):.1f} s",
        })
        delivered(result, tally, clients, complete, f"{rounds} x {append} B after {initial} B",
                  delivery)
        result.figures.update({
            "server PSS idle / with clients": f"{mib(pss_before)} / {mib(pss_connected)}",
            "PSS per client": f"{(pss_connected - pss_before) / clients / 1024:.1f} KiB",
            "server RSS with clients (sum over processes)": mib(rss_connected),
            "server fds (all processes)": tree_fds(server),
            "server CPU time (all processes)": f"{tree_cpu(server):.1f} s",
            "server CPU per append (all processes)": f"{cpu / max(len(delivery), 1):.2f} s",
        })
        result.check(len(delivery) == rounds, f"{rounds - len(delivery)} appends not delivered")
    return result

"""The command line: which cases, at which scale, and the report."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .crowd import follow_crowd
from .faults import churn, hostile_headers, kill_and_restart
from .load import fd_exhaustion, follow_clients, slowloris, stalled_readers
from .report import MiB, Result, report
from .rotation import rotation
from .server import ServerProcess, raise_fd_limit

CASES: Dict[str, Callable[..., Result]] = {
    "follow": follow_clients,
    "fdlimit": fd_exhaustion,
    "slowloris": slowloris,
    "hostile": hostile_headers,
    "churn": churn,
    "kill9": kill_and_restart,
    "stalled": stalled_readers,
    "rotation": rotation,
    "crowd": follow_crowd,
}

#: Cases run only when named in --only: ``crowd`` takes the whole machine.
ON_REQUEST = ("crowd",)

#: Counts for --quick: a couple of minutes in all.
QUICK: Dict[str, dict] = {
    "follow": dict(clients=1000, rounds=3),
    "fdlimit": dict(clients=400, settle=3.0, window=3.0),
    "slowloris": dict(connections=500, header_timeout=3.0, baseline=1.0),
    "hostile": dict(headers=5000),
    "churn": dict(duration=15.0),
    "kill9": dict(mirrors=5, kills=2, interval=1.5),
    "stalled": dict(stalled=50, active=5, total=64 * MiB),
    "crowd": dict(clients=4000, rounds=3),
    "rotation": dict(rotations=4, clients=6, interval=1.0),
}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="soak", description="A bounded torture run of tailsrv on 127.0.0.1, "
        "printing a markdown report. Exit status 0 when every case held.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts: a couple of minutes in all")
    parser.add_argument("--only", metavar="CASES",
                        help=f"comma-separated cases to run, of: {', '.join(CASES)}")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--clients", type=int, metavar="N",
                        help="concurrent followers of the follow case (default 19,000; "
                             "--quick 1,000) and of the crowd case (default 100,000; "
                             "--quick 4,000)")
    parser.add_argument("--server", metavar="TEMPLATE",
                        help="run another server instead of this tree's tailsrv, as a "
                             "command with {port} and {path} (for the follow case, e.g. "
                             "the yardstick: '/tmp/tsref -p {port} {path}')")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (server logs, mirrors)")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else [c for c in CASES if c not in ON_REQUEST]
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    args.cases = chosen
    if args.server and ("{port}" not in args.server or "{path}" not in args.server):
        parser.error("--server: expected a command with {port} and {path}")
    return args


def run_case(name: str, work: Path, quick: bool, clients: Optional[int] = None) -> Result:
    """One case; an error of the soak itself becomes a failed result, not a traceback."""
    counts = dict(QUICK[name]) if quick else {}
    if name in ("follow", "crowd") and clients:
        counts["clients"] = clients
    try:
        return CASES[name](work, **counts)
    except Exception as error:  # a broken case must not stop the others
        return Result(name, "(the case could not run)",
                      failures=[f"{type(error).__name__}: {error}"])


def _terminate(signum: int, _frame) -> None:
    raise SystemExit(f"soak: {signal.Signals(signum).name}, stopping")


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    limit = raise_fd_limit()
    ServerProcess.template = args.server
    work = Path(tempfile.mkdtemp(prefix="tailsrv-soak-"))
    print(f"soak: fd limit {limit}, work directory {work}", file=sys.stderr)
    results: List[Result] = []
    began = time.monotonic()
    try:
        for name in args.cases:
            print(f"soak: {name}...", file=sys.stderr, flush=True)
            case_began = time.monotonic()
            result = run_case(name, work, args.quick, args.clients)
            print(f"soak: {name}: {'held' if result.ok else 'FAILED'} "
                  f"({time.monotonic() - case_began:.0f} s)", file=sys.stderr, flush=True)
            results.append(result)
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(report(results, args.quick, time.monotonic() - began))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([dict(name=r.name, must_hold=r.must_hold, held=r.ok, figures=r.figures,
                            failures=r.failures) for r in results], out, indent=2)
    return 0 if results and all(r.ok for r in results) and len(results) == len(args.cases) else 1


if __name__ == "__main__":
    sys.exit(main())

"""What a case found, and the markdown report made of it."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List

MiB = 1 << 20


@dataclass
class Result:
    """What one case must show, the figures it measured, what did not hold."""

    name: str
    must_hold: str
    figures: Dict[str, object] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, condition: bool, failure: str) -> bool:
        if not condition:
            self.failures.append(failure)
        return condition


class Tally(Counter):
    """Event counts of a case, plus the first few notes worth reading."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: List[str] = []

    def note(self, text: str) -> None:
        if len(self.notes) < 5:
            self.notes.append(text)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def spread(values: List[float], unit: Callable[[float], str] = ms) -> str:
    """min / median / p99 / max of a sample, or "none"."""
    if not values:
        return "none"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{unit(ordered[0])} / {unit(statistics.median(ordered))} / {unit(p99)} / "
            f"{unit(ordered[-1])} (min/median/p99/max of {len(ordered)})")


def report(results: List[Result], quick: bool, elapsed: float) -> str:
    """The markdown report: a summary table, then each case's figures."""
    held = sum(r.ok for r in results)
    out = [f"### soak report: {held} of {len(results)} cases held",
           "",
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
           f"{'--quick' if quick else 'full run'}, "
           f"{elapsed:.0f} s; Linux {platform.release()}, {os.cpu_count()} cores, "
           f"Python {platform.python_version()}.",
           "",
           "| case | must hold | result |",
           "| --- | --- | --- |"]
    out += [f"| {r.name} | {r.must_hold} | {'held' if r.ok else 'FAILED'} |" for r in results]
    for r in results:
        out += ["", f"#### {r.name}: {'held' if r.ok else 'FAILED'}", "",
                "| figure | value |", "| --- | --- |"]
        out += [f"| {k} | {v} |" for k, v in r.figures.items()]
        out += [f"- failed: {f}" for f in r.failures]
    return "\n".join(out) + "\n"

"""Smoke run of scripts/bench: tiny sizes and short runs, so only that it
works and that no record is lost is checked, never how fast anything is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the bench's load client needs gcc")
def test_bench_smoke_run_prints_a_table_and_loses_nothing(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, str(BENCH), "--only", "tp1,fan100,lat1,lat100,idle100,churn",
         "--tp-mib", "2", "--fan100-mib", "0.25", "--seconds", "0.5", "--rate", "200",
         "--json", str(report)],
        capture_output=True, text=True, timeout=90, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| scenario | tailsrv |")
    assert [row.split(" | ")[0][2:] for row in rows[2:]] == [
        "tp1", "fan100", "lat1", "lat100", "idle100", "churn"]
    results = json.loads(report.read_text())["results"]["tailsrv"]
    for scenario in ("lat1", "lat100"):
        assert results[scenario]["records"] == 100
        assert results[scenario]["missing"] == 0
        assert results[scenario]["out_of_order"] == 0
    assert results["churn"]["conn_s"] > 0
    assert results["tp1"]["mb_s"] > 0


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the bench's load client needs gcc")
def test_bench_gives_each_server_as_a_ratio_to_the_first(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    tailsrv = Path(sys.executable).parent / "tailsrv"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--only", "lat1,churn", "--seconds", "0.5",
         "--rate", "200", "--json", str(report),
         "--server", f"logging={tailsrv} -p {{port}} {{path}}",
         "--server", f"quiet={tailsrv} -p {{port}} --log-level warning {{path}}"],
        capture_output=True, text=True, timeout=90, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "| figure | better | quiet / logging |" in done.stdout
    ratios = json.loads(report.read_text())["ratios"]
    # (CPU rows too, unless the first server's CPU time was below a clock tick)
    assert {"churn conn_s", "lat1 p50_us", "lat1 p99_us"} <= set(ratios)
    assert ratios["churn conn_s"]["quiet"] > 0 and ratios["lat1 p50_us"]["quiet"] > 0

"""The example systemd units in scripts/systemd/ are valid (systemd-analyze)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import script

UNITS = Path(__file__).resolve().parent.parent / "scripts" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_verify(tmp_path):
    instance = "var-log-app.log"  # systemd-escape --path /var/log/app.log
    names = []
    for unit in ("tailsrv@.service", "tailsrv@.socket"):
        text = (UNITS / unit).read_text()
        # Point ExecStart at the tailsrv this test suite runs.
        text = text.replace("/usr/local/bin/tailsrv", script("tailsrv"))
        name = unit.replace("@", f"@{instance}")
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    result = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr

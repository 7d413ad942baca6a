"""The library in a gevent program that monkey-patched itself first, as gevent's
documentation, gunicorn's gevent worker and most gevent programs do.

The tests of what such a program embeds (`TailServer`, the client library) run
a second time, in a pytest subprocess that calls ``gevent.monkey.patch_all()``
before importing anything else; this test run itself stays unpatched, as the
library never patches. test_client_gevent.py, test_examples.py and
test_gunicorn.py patch in their own subprocesses."""

import subprocess
import sys
from pathlib import Path

import pytest

#: Test modules of the embeddable parts, relative to this directory.
EMBEDDED = ("test_server.py", "test_server_listeners.py", "test_client.py")

PATCHED_PYTEST = """
from gevent import monkey
monkey.patch_all()
import sys
import pytest
assert monkey.is_module_patched("select") and monkey.is_module_patched("threading")
sys.exit(pytest.main(sys.argv[1:]))
"""


@pytest.mark.timeout(150)
def test_the_embeddable_parts_pass_their_tests_monkey_patched():
    result = subprocess.run(
        [sys.executable, "-c", PATCHED_PYTEST, "-q", "-p", "no:cacheprovider", *EMBEDDED],
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout.splitlines()[-1]

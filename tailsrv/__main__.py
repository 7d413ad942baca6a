"""``python -m tailsrv``: the same as the ``tailsrv`` command."""

import sys

from .cli import main

sys.exit(main())

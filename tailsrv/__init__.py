"""tailsrv: stream a growing file to many TCP clients, like ``tail -f`` as a server.

A drop-in replacement for the Rust tailsrv, built on gevent. The public API is
`TailServer` (embed it in a gevent program) and `tcp_listener` (the socket the
command line listens on).
"""

from .listeners import tcp_listener
from .server import TailServer

#: The one place the version is written (setup.py reads it from here): a
#: literal, because asking importlib.metadata costs 2.4 MiB of imports per server.
__version__ = "0.1.0"

__all__ = ["TailServer", "tcp_listener", "__version__"]

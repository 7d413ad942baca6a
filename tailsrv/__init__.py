"""tailsrv: stream a growing file to many TCP clients, like ``tail -f`` as a server.

A drop-in replacement for the Rust tailsrv, built on gevent. The public API is
`TailServer` (embed it in a gevent program) and `tcp_listener` (the socket the
command line listens on).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tailsrv")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from .listeners import tcp_listener  # noqa: E402
from .server import TailServer  # noqa: E402

__all__ = ["TailServer", "tcp_listener", "__version__"]

"""tailsrv: stream a growing file to many TCP clients, like ``tail -f`` as a server.

A drop-in replacement for the Rust tailsrv, built on gevent. The public API is
`TailServer` (embed it in a gevent program) and `tcp_listener` (the socket the
command line listens on).
"""

from .listeners import tcp_listener
from .server import TailServer


def __getattr__(name: str) -> str:
    """``__version__``, read from the package metadata (setup.py is the one
    place it is written) when first asked for: importing importlib.metadata
    costs 2.4 MiB, which a server that is never asked should not pay."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("tailsrv")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__all__ = ["TailServer", "tcp_listener", "__version__"]

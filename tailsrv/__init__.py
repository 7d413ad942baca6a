"""tailsrv: stream a growing file to many TCP clients, like ``tail -f`` as a server.

A drop-in replacement for the Rust tailsrv, built on gevent. The public API is
`TailServer` (embed it in a gevent program), `ManyServer` (the same for a
directory or several files) and `tcp_listener` (the socket the command line
listens on).

The package is grouped by side, and imports run one way, downwards:

- ``protocol``, ``names``, ``lines``: the pure rules both sides share (no I/O);
- ``logs``, ``usage``, ``keepalive``: small utilities every side uses;
- ``server/``: the serving side (the file, the fan-out, accepting, `TailServer`);
- ``http/``: the ``--http`` front, its pure rules and the viewer page;
- ``ops/``: what runs a server (metrics, systemd);
- ``client/``: ``follow()`` and the client scripts; never imports ``server/``;
- ``cli``: the ``tailsrv`` command line, at the top.

These names are loaded when first asked for, so that a client script, which imports
this package too, does not load the server.
"""

_PUBLIC = {"TailServer": "tailsrv.server.tailserver", "ManyServer": "tailsrv.server.many",
           "tcp_listener": "tailsrv.server.listeners"}


def __getattr__(name: str):
    """`TailServer`, `ManyServer` and `tcp_listener`, imported on first use; ``__version__``,
    read from the package metadata (pyproject/setup is the one place it is
    written) when first asked for: importing importlib.metadata costs 2.4 MiB,
    which a server that is never asked should not pay."""
    if name in _PUBLIC:
        from importlib import import_module
        return getattr(import_module(_PUBLIC[name]), name)
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("tailsrv")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__all__ = ["TailServer", "ManyServer", "tcp_listener", "__version__"]

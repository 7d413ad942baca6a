"""The serving side: the watched file and its rotation, the fan-out of its bytes to
clients, headers being read, accepting and listening sockets, and `TailServer`,
which joins them.

May import the shared rules and utilities at the package's top (``protocol``,
``lines``, ``logs``, ``keepalive``); never ``http``, ``ops``, ``client`` or ``cli``.
"""

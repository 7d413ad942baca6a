"""What runs a server in production: Prometheus metrics and systemd (readiness,
the journal, socket activation).

May import ``server`` and the shared utilities at the top; never ``http``,
``client`` or ``cli``.
"""

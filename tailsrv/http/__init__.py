"""The ``--http`` front: its rules, free of I/O (``rules``), the listener
(``front``), the chunked client in the fan-out (``chunked``) and the viewer page
(``static/``).

May import ``server`` and the shared rules at the top; never ``ops``, ``client`` or
``cli``.
"""

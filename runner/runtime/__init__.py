"""The in-container runtime: stdlib only, Python 3.9+, run as `python3 entry.py SPEC`.

The host mounts this folder read-only into the run's container (or runs it as a
subprocess for the local backend); `entry.py` imports the modules here under
its own package name, never through `runner`. Nothing here imports `runner`.
Only notebook.py imports packages beyond the stdlib (nbclient and its kin), inside
the function that runs a notebook: only a notebook function's image has them.
"""

from __future__ import annotations

import os

RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))
ENTRY_POINT = os.path.join(RUNTIME_DIR, "entry.py")

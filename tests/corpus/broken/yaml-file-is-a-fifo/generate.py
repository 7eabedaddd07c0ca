"""A function file that is a named pipe: refused, never opened for a read that waits for ever."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    os.mkfifo(root / "functions" / "pipe.yaml")

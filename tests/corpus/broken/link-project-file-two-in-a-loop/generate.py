"""Two job files, each a symbolic link to the other."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    os.symlink("b.yaml", root / "jobs" / "a.yaml")
    os.symlink("a.yaml", root / "jobs" / "b.yaml")

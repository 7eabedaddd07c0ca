"""A function file that is a symbolic link to itself."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    os.symlink("loop.yaml", root / "functions" / "loop.yaml")

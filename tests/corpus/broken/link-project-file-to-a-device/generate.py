"""A function file that is a symbolic link to /dev/zero: never read, let alone without end."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    os.symlink("/dev/zero", root / "functions" / "zero.yaml")

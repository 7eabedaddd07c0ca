"""A repository input is a symbolic link to a file of the host."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    (root / "data" / "raw.csv").unlink()
    os.symlink("../../../../../../../../etc/passwd", root / "data" / "raw.csv")

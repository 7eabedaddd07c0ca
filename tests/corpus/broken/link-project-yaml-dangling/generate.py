"""project.yaml itself is a symbolic link to nothing."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    (root / "project.yaml").unlink()
    os.symlink("gone/project.yaml", root / "project.yaml")

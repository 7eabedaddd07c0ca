"""The jobs folder is a symbolic link to a folder outside the project."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    os.rename(root / "jobs", root.parent / "outside-jobs")
    os.symlink(root.parent / "outside-jobs", root / "jobs")

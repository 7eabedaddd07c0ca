"""A function file that is a symbolic link to nothing."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    os.symlink("nowhere.yaml", root / "functions" / "dangling.yaml")

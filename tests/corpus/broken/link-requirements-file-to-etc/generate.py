"""The requirements file is a symbolic link to a file of the host."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    (root / "requirements.txt").unlink()
    os.symlink("/etc/hostname", root / "requirements.txt")

"""The code package is a symbolic link to a folder outside the project."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    code = root / "src" / "model"
    code.rename(root.parent / "outside-model")
    os.symlink("../../outside-model", code)

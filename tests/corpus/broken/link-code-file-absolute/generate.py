"""The code file is a symbolic link to an absolute path (here, a copy of it outside the project)."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    code = root / "src" / "prep.py"
    outside = root.parent / "outside-prep.py"
    code.rename(outside)
    os.symlink(outside, code)

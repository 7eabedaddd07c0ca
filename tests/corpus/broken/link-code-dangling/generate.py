"""The code file is a symbolic link to a file that does not exist."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    code = root / "src" / "prep.py"
    code.unlink()
    os.symlink("old-prep.py", code)

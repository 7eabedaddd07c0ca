"""A valid function file, moved out of the project and linked to from where it was."""

from __future__ import annotations

import os
from pathlib import Path


def make(root: Path) -> None:
    outside = root.parent / "outside-prep.yaml"
    (root / "functions" / "prep.yaml").rename(outside)
    os.symlink("../../outside-prep.yaml", root / "functions" / "prep.yaml")

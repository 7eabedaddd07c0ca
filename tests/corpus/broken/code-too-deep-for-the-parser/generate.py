"""Python code nested deeper than Python's parser goes (a RecursionError in ast.parse)."""

from __future__ import annotations

from pathlib import Path


def make(root: Path) -> None:
    code = root / "src" / "prep.py"
    code.write_text(code.read_text() + "x = " + "1 + " * 200_000 + "1\n")

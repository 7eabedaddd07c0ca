"""Python code that overflows the parser's own stack (a MemoryError in ast.parse)."""

from __future__ import annotations

from pathlib import Path


def make(root: Path) -> None:
    code = root / "src" / "prep.py"
    code.write_text(code.read_text() + "x = " + "-" * 1_000_000 + "1\n")

"""Python code with 10,000 nested parentheses."""

from __future__ import annotations

from pathlib import Path


def make(root: Path) -> None:
    code = root / "src" / "model" / "steps.py"
    code.write_text(code.read_text() + "x = " + "(" * 10_000 + ")" * 10_000 + "\n")

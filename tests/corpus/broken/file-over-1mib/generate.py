"""Pad functions/prep.yaml with comments to just over 1 MiB: the file is valid YAML but too big."""

from __future__ import annotations

import pathlib


def make(root: pathlib.Path) -> None:
    path = root / "functions" / "prep.yaml"
    text = path.read_text("utf-8")
    padding = "# " + "x" * 97 + "\n"  # 100 bytes a line
    lines = (1024 * 1024 - len(text)) // len(padding) + 1
    path.write_text(text + padding * lines, "utf-8")
    assert path.stat().st_size > 1024 * 1024

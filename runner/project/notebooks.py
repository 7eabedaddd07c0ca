"""A notebook as the checks read it: nbformat 4 JSON, a Python kernel, at most one cell
tagged `parameters`; each problem at its line and column of the file.

Stdlib only: the checks run wherever runyard does (a pre-commit hook, a bare
repository's hook), where Jupyter's packages need not be; only the image that runs the
notebook has them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from runner.errors import Problem

PARAMETERS_TAG = "parameters"  # as papermill, and runner/runtime/notebook.py
CELL_TYPES = ("code", "markdown", "raw")
_SPACE = re.compile(r"[ \t\n\r]*")


def problems(file: str, text: str) -> list[Problem]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return [Problem(file, error.lineno, error.colno, f"the notebook is not valid JSON: {error.msg}")]
    except RecursionError:
        return [Problem(file, 1, 1, "the notebook is nested too deeply to be read")]
    if not isinstance(data, dict):
        return [Problem(file, 1, 1, "a notebook is a JSON object with `cells`, `metadata` and "
                                    "`nbformat`; this is not one")]
    values, cells = _positions(text)

    def problem(offset: int | None, message: str) -> Problem:
        line, col = _line_col(text, offset or 0)
        return Problem(file, line, col, message)

    found = []
    version = data.get("nbformat")
    if version != 4:
        found.append(problem(values.get("nbformat"), f"nbformat {version!r}: runyard runs notebooks "
                             "of format 4 (Jupyter saves them so); open and save it in Jupyter"))
    language = kernel_language(data.get("metadata"))
    if language is not None and language.lower() != "python":
        found.append(problem(values.get("metadata"), f"the notebook's kernel is {language!r}: runyard "
                             "runs notebooks in a Python kernel (use `command` for other languages)"))
    if not isinstance(data.get("cells"), list):
        found.append(problem(values.get("cells"), "the notebook has no list of `cells`"))
        return found
    tagged = []
    for index, cell in enumerate(data["cells"]):
        where = cells[index] if index < len(cells) else None
        why = cell_problem(cell)
        if why is not None:
            found.append(problem(where, f"cell {index + 1}: {why}"))
        elif PARAMETERS_TAG in cell_tags(cell):
            tagged.append(index)
            if len(tagged) > 1:
                found.append(problem(where, f"cell {index + 1} is tagged `parameters`, as cell "
                                     f"{tagged[0] + 1} is: tag at most one cell (runyard sets the "
                                     "params in a cell it adds after it)"))
    return found


def kernel_language(metadata: object) -> str | None:
    """The language the notebook's metadata names, if it names one."""
    if not isinstance(metadata, dict):
        return None
    for key, field in (("kernelspec", "language"), ("language_info", "name")):
        section = metadata.get(key)
        value = section.get(field) if isinstance(section, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def cell_problem(cell: object) -> str | None:
    if not isinstance(cell, dict):
        return f"a cell is a JSON object, not {type(cell).__name__}"
    if cell.get("cell_type") not in CELL_TYPES:
        return f"cell_type {cell.get('cell_type')!r} is none of {', '.join(CELL_TYPES)}"
    source = cell.get("source")
    if not (isinstance(source, str) or
            (isinstance(source, list) and all(isinstance(line, str) for line in source))):
        return "its source is neither a string nor a list of strings"
    if not isinstance(cell.get("metadata", {}), dict):
        return "its metadata is not a JSON object"
    return None


def cell_tags(cell: dict[str, Any]) -> list[str]:
    tags = cell.get("metadata", {}).get("tags")
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def _positions(text: str) -> tuple[dict[str, int], list[int]]:
    """Where each top-level key's value starts in `text` (valid JSON, an object), and
    where each element of `cells` does."""
    decoder = json.JSONDecoder()
    values: dict[str, int] = {}
    cells: list[int] = []
    index = _skip(text, 0) + 1  # past "{"
    index = _skip(text, index)
    while index < len(text) and text[index] != "}":
        key, index = decoder.raw_decode(text, index)
        index = _skip(text, _skip(text, index) + 1)  # past ":"
        values[key] = index
        if key == "cells" and text[index] == "[":
            cells, index = _elements(decoder, text, index)
        else:
            index = decoder.raw_decode(text, index)[1]
        index = _skip(text, index)
        if text[index] == ",":
            index = _skip(text, index + 1)
    return values, cells


def _elements(decoder: json.JSONDecoder, text: str, index: int) -> tuple[list[int], int]:
    """Where each element of the array at `index` starts, and the index past the array."""
    starts = []
    index = _skip(text, index + 1)
    while text[index] != "]":
        starts.append(index)
        index = _skip(text, decoder.raw_decode(text, index)[1])
        if text[index] == ",":
            index = _skip(text, index + 1)
    return starts, index + 1


def _skip(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    return match.end() if match else index


def _line_col(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)

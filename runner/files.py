"""The files runyard ships beside its code: schemas, templates and the runtime."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).parent


def package_file(*parts: str) -> Path:
    """A file or folder of the package, on disk (runs mount the runtime's folder). Found
    from this module rather than with importlib.resources, whose readers import zipfile:
    milliseconds of every command."""
    return PACKAGE.joinpath(*parts)

"""runyard: a git-native runner for ML and data jobs.

The Python API (as MLRun's): `load_project(path).run_function(...)`, `new_task(...)`,
returning a `RunObject`. Imported lazily, so the command line stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DataItem", "RunObject", "load_project", "new_task"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")

"""runyard: a git-native runner for ML and data jobs.

The Python API (as MLRun's): `new_project(...)`, `load_project(...)`,
`run_function(...)` (on a project, or on the current one), `new_task(...)`,
`list_runs(...)` and `get_run(uid)`, returning `RunObject`s. Imported lazily, so the command line stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DataItem", "RunObject", "get_current_project", "get_run", "list_runs", "load_project",
           "new_project", "new_task", "run_function"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
